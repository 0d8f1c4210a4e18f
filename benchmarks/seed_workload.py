"""The seed example's workload, for one engine; run by bench_seed.py in a fresh process.

Usage: python seed_workload.py {nilearn,daskglm} DATASET_DIR OUT_DIR

Fits the two runs together (smoothing_fwhm=5, AR(1), the dataset's mask and
design matrices) and writes the eight contrasts of nilearn's two-runs example
(:func:`daskglm.data.fiac.seed_contrasts`, for both engines) as NIfTI z maps,
exactly as the example does.  Only the FirstLevelModel import differs.
"""

import json
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

engine, data_dir, out_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from daskglm.data.fiac import seed_contrasts  # noqa: E402

if engine == "nilearn":
    from nilearn.glm.first_level import FirstLevelModel
elif engine == "daskglm":
    from daskglm import FirstLevelModel
else:
    raise SystemExit(f"unknown engine {engine!r}")

data = json.loads((data_dir / "dataset.json").read_text())
fmri_imgs = [data["func1"], data["func2"]]
design_matrices = [pd.DataFrame(np.load(data[f"design_matrix{i}"])["X"]) for i in (1, 2)]
fmri_glm = FirstLevelModel(mask_img=data["mask"], smoothing_fwhm=5, minimize_memory=True)
fmri_glm = fmri_glm.fit(fmri_imgs, design_matrices=design_matrices)

contrasts = seed_contrasts(design_matrices[0].shape[1])
out_dir.mkdir(parents=True, exist_ok=True)
for contrast_id, contrast_val in contrasts.items():
    z_map = fmri_glm.compute_contrast(contrast_val, output_type="z_score")
    z_map.to_filename(out_dir / f"{contrast_id}_z_map.nii.gz")
