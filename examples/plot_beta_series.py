# ruff: noqa: E402  (sphinx-gallery style: imports where they are first used)
"""
Beta-series modeling for task-based functional connectivity, with daskglm
=========================================================================

nilearn's "Beta-Series Modeling for Task-Based Functional Connectivity"
(``examples/07_advanced/plot_beta_series.py``) with daskglm's
:class:`~daskglm.BetaSeriesModel` in place of its per-trial loop of
``FirstLevelModel`` fits, on a generated event-related run (the real example
fetches the language localizer demo dataset).

Steps:

1. generate a run whose trials have trial-to-trial variability shared by a
   "seed" region and a "target" region;
2. LSA and LSS beta series, each from one streaming pass over the run;
3. check one trial against nilearn's own recipe (one ``FirstLevelModel``);
4. beta-series connectivity: correlate the seed's betas with every voxel's.

Run it with ``python examples/plot_beta_series.py``; outputs go to
``results/plot_beta_series`` in the current directory.
"""

# %%
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import nibabel as nib
import numpy as np
import pandas as pd

out = Path("results") / "plot_beta_series"
out.mkdir(parents=True, exist_ok=True)

# %%
# 1. A generated event-related run: 40 trials of two conditions; the seed and
# target spheres share each trial's amplitude, the rest of the brain does not.
from nilearn.glm.first_level import make_first_level_design_matrix

from daskglm.data.volumes import ar1_noise, centred_affine, ellipsoid, sphere

rng = np.random.default_rng(0)
shape, n_scans, t_r, n_trials = (20, 24, 20), 240, 2.0, 40
onsets = np.sort(rng.uniform(4, n_scans * t_r - 30, n_trials)).round(1)
events_df = pd.DataFrame({"onset": onsets, "duration": 1.0,
                          "trial_type": np.where(np.arange(n_trials) % 2, "language", "string")})
mask = ellipsoid(shape, (0.9, 0.9, 0.9), (0, 0, 0))
seed_region = sphere(shape, (0.3, 0.5, 0.5), 3) & mask
target_region = sphere(shape, (0.7, 0.5, 0.5), 3) & mask
trial_amplitude = rng.normal(1.0, 0.8, n_trials)  # shared by seed and target
X = make_first_level_design_matrix(
    np.arange(n_scans) * t_r, events_df.assign(trial_type=[f"t{i}" for i in range(n_trials)]), drift_model=None
)[[f"t{i}" for i in range(n_trials)]].to_numpy()
shared = X @ trial_amplitude
independent = X @ rng.normal(1.0, 0.8, (n_trials,) + shape).reshape(n_trials, -1)
data = 300.0 + 4.0 * independent.reshape((n_scans,) + shape)
data[:, seed_region | target_region] += 4.0 * shared[:, None]
data += 2.0 * ar1_noise(rng, (n_scans,) + shape, 0, 0.3)
affine = centred_affine(shape, 3.0)
fmri_img = nib.Nifti1Image(np.moveaxis(data, 0, -1).astype(np.float32) * mask[..., None], affine)
mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)

# %%
# 2. LSA and LSS beta series: one BetaSeriesModel each (any FirstLevelModel parameter applies).
from daskglm import BetaSeriesModel

lsa = BetaSeriesModel(method="lsa", t_r=t_r, mask_img=mask_img).fit(fmri_img, events_df)
lss = BetaSeriesModel(method="lss", t_r=t_r, mask_img=mask_img).fit(fmri_img, events_df)
lss_beta_maps = lss.beta_maps()  # {trial_type: 4D image}, as nilearn's example builds with concat_imgs
print({name: img.shape for name, img in lss_beta_maps.items()})
print(lss.betas_)  # the lazy (trial, voxel) DataArray behind the maps

# %%
# 3. One trial with nilearn's own LSS recipe: the same beta map.
from nilearn.glm.first_level import FirstLevelModel
from nilearn.maskers import NiftiMasker

events = events_df.copy()
events.loc[0, "trial_type"] = "string__000"
nilearn_glm = FirstLevelModel(t_r=t_r, mask_img=mask_img).fit(fmri_img, events)
reference = NiftiMasker(mask_img).fit().transform(nilearn_glm.compute_contrast("string__000",
                                                                               output_type="effect_size"))
ours = lss.betas_.values[0]
print("max |daskglm - nilearn| / max |beta| for trial 0:",
      float(np.abs(ours - np.ravel(reference)).max() / np.abs(reference).max()))

# %%
# 4. Beta-series connectivity of the seed, per condition, for LSA and LSS.
from nilearn.plotting import plot_stat_map

for name, model in (("LSA", lsa), ("LSS", lss)):
    betas = model.betas_.values  # (trial, voxel)
    seed = betas[:, seed_region[mask]].mean(axis=1)
    centred = betas - betas.mean(axis=0)
    r = centred.T @ (seed - seed.mean()) / (
        np.linalg.norm(centred, axis=0) * np.linalg.norm(seed - seed.mean()) + 1e-12)
    r_img = model.space_.unmask(r)
    print(f"{name}: mean r in the target region {r[target_region[mask]].mean():.2f}, elsewhere "
          f"{r[~(seed_region | target_region)[mask]].mean():.2f}")
    plot_stat_map(r_img, threshold=0.5, title=f"{name} beta-series connectivity of the seed",
                  cut_coords=(0, 0, 0), output_file=out / f"{name.lower()}_connectivity.png")
