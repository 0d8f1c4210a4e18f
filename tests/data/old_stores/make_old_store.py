"""How ``v1_store`` and ``v2_store`` were made (store formats 1 and 2, for tests/test_found_faults.py).

Run with an old daskglm on the path, e.g. for format 2 (commit ae11d6d) and format 1 (the
parent of d6a8534)::

    git archive <commit> daskglm | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/data/old_stores/make_old_store.py tests/data/old_stores/v2_store

It writes the store and ``<store>.z.npy``, the z map of ``"a - b"`` computed in memory (renamed
``v2.z.npy`` here).
"""

import shutil
import sys
import warnings

import nibabel as nib
import numpy as np
import pandas as pd

from daskglm import FirstLevelModel

warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
runs, designs = [], []
for n in (60, 60):
    X = pd.DataFrame(np.c_[rng.normal(size=(n, 3)), np.ones(n)], columns=["a", "b", "c", "constant"])
    bold = 100 + X.to_numpy() @ rng.normal(size=(4, 60)) + rng.normal(size=(n, 60))
    runs.append(nib.Nifti1Image(bold.T.reshape(5, 4, 3, n), np.eye(4)))
    designs.append(X)
shutil.rmtree(sys.argv[1], ignore_errors=True)
model = FirstLevelModel(mask_img=False, noise_model="ols").fit(runs, design_matrices=designs)
model.to_zarr(sys.argv[1])
np.save(sys.argv[1] + ".z.npy", model.compute_contrast("a - b").get_fdata())
