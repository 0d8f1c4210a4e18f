# ruff: noqa: E402  (sphinx-gallery style: imports where they are first used)
"""
Simple example of two-runs fMRI model fitting, with daskglm
===========================================================

nilearn's "Simple example of two-runs fMRI model fitting", step by step, with
daskglm in place of nilearn's ``FirstLevelModel`` and simulated FIAC-like
data (:func:`daskglm.data.fiac.make_fiac_like`, which has a known ground
truth) in place of ``fetch_fiac_first_level``.  With internet access,
``daskglm.data.fiac.fetch_fiac_first_level()`` returns the real data with the
same keys.

Steps:

1. set up the GLM;
2. compare run-specific and fixed-effects contrasts;
3. compute a range of contrasts across both runs;
4. generate a report.

Run it with ``python examples/plot_two_runs_model.py``; outputs go to
``results/plot_two_runs_model`` in the current directory.
"""

# %%
# Create an output folder.
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

output_dir = Path.cwd() / "results" / "plot_two_runs_model"
output_dir.mkdir(exist_ok=True, parents=True)
print(f"Output will be saved to: {output_dir}")

# %%
# Set up the GLM
# --------------
# Simulate the data: two runs with FIAC's design.  The dict has the keys of
# nilearn's fetcher (func1, func2, design_matrix1, design_matrix2, mask).
from daskglm.data.fiac import make_fiac_like

data = make_fiac_like(output_dir / "data", shape=(32, 38, 32), n_scans=191)
fmri_imgs = [data["func1"], data["func2"]]

# %%
# The design matrices were pre-computed, we simply put them in a list of
# DataFrames.
import numpy as np
import pandas as pd

design_files = [data["design_matrix1"], data["design_matrix2"]]
design_matrices = [pd.DataFrame(np.load(df)["X"]) for df in design_files]

# %%
# Initialize the GLM, with the dataset's brain mask.
from daskglm import FirstLevelModel

fmri_glm = FirstLevelModel(
    mask_img=data["mask"],
    smoothing_fwhm=5,
    minimize_memory=True,
)

# %%
# Compare run-specific and fixed effects contrasts
# ------------------------------------------------
# Cut through the simulated "sentence repetition" region, which responds to
# DSt (different sentence) more than to SSt.
import nibabel as nib
from nilearn import plotting

truth = nib.load(data["ground_truth"]["sentence_repetition"])
centre = np.argwhere(np.asarray(truth.dataobj) > 0).mean(axis=0)
cut_coords = [round(float(v)) for v in nib.affines.apply_affine(truth.affine, centre)]
contrast_id = "DSt_minus_SSt"

# %%
# Compute the statistics for the first run.
contrast_val = [[-1, -1, 1, 1]]
fmri_glm_run_1 = fmri_glm.fit(fmri_imgs[0], design_matrices=design_matrices[0])

# %%
# The mean image for plotting purpose: the fit's ``mean_img_``, the time mean
# of the first run over the mask, kept by the fit's one streaming pass (nilearn's
# example computes it apart, with ``mean_img``, loading the run whole).  Take it
# now: ``fmri_glm`` is refitted to the second run below.
mean_img_ = fmri_glm_run_1.mean_img_

summary_statistics_run_1 = fmri_glm_run_1.compute_contrast(
    contrast_val,
    output_type="all",
)
plotting.plot_stat_map(
    summary_statistics_run_1["z_score"],
    bg_img=mean_img_,
    threshold=3.0,
    cut_coords=cut_coords,
    title=f"{contrast_id}, first run",
    output_file=output_dir / f"{contrast_id}_run1.png",
)

# %%
# Compute the statistics for the second run.
fmri_glm_run_2 = fmri_glm.fit(fmri_imgs[1], design_matrices=design_matrices[1])
contrast_val = np.array([[-1, -1, 1, 1]])
summary_statistics_run_2 = fmri_glm_run_2.compute_contrast(
    contrast_val,
    output_type="all",
)
plotting.plot_stat_map(
    summary_statistics_run_2["z_score"],
    bg_img=mean_img_,
    threshold=3.0,
    cut_coords=cut_coords,
    title=f"{contrast_id}, second run",
    output_file=output_dir / f"{contrast_id}_run2.png",
)

# %%
# Compute the fixed effects statistics using the statistical maps of both
# runs, with :func:`daskglm.compute_fixed_effects`.
from daskglm import compute_fixed_effects

contrast_imgs = [
    summary_statistics_run_1["effect_size"],
    summary_statistics_run_2["effect_size"],
]
variance_imgs = [
    summary_statistics_run_1["effect_variance"],
    summary_statistics_run_2["effect_variance"],
]
fixed_fx_contrast, fixed_fx_variance, fixed_fx_stat, _ = compute_fixed_effects(
    contrast_imgs,
    variance_imgs,
    data["mask"],
)
plotting.plot_stat_map(
    fixed_fx_stat,
    bg_img=mean_img_,
    threshold=3.0,
    cut_coords=cut_coords,
    title=f"{contrast_id}, fixed effects",
    output_file=output_dir / f"{contrast_id}_fixed_effects.png",
)

# %%
# Compute the fixed effects statistics using the preprocessed data of both
# runs: fit the GLM to both runs at once.
fmri_glm_multirun = fmri_glm.fit(fmri_imgs, design_matrices=design_matrices)
contrast_val = [
    np.array([[-1, -1, 1, 1]]),  # run 1
    np.array([[-1, -1, 1, 1]]),  # run 2
]
z_map = fmri_glm_multirun.compute_contrast(
    contrast_val,
    output_type="z_score",
)
plotting.plot_stat_map(
    z_map,
    bg_img=mean_img_,
    threshold=3.0,
    cut_coords=cut_coords,
    title=f"{contrast_id}, fixed effects (multi-run fit)",
    output_file=output_dir / f"{contrast_id}_multirun.png",
)

# %%
# Compute a range of contrasts across both runs
# ---------------------------------------------
# The eight contrasts of nilearn's example (seven t contrasts and an F
# contrast), as :func:`daskglm.data.fiac.seed_contrasts` holds them.
from daskglm.data.fiac import seed_contrasts

n_columns = design_matrices[0].shape[1]
contrasts = seed_contrasts(n_columns)

# %%
# Compute the contrasts and write the z maps.
print("Computing contrasts...")
for index, (contrast_id, contrast_val) in enumerate(contrasts.items()):
    print(f"  Contrast {index + 1:02g} out of {len(contrasts)}: {contrast_id}")
    z_map = fmri_glm.compute_contrast(contrast_val, output_type="z_score")
    z_image_path = output_dir / f"{contrast_id}_z_map.nii.gz"
    z_map.to_filename(z_image_path)

# %%
# Keep the fit: reopen it later with ``daskglm.open_model`` to compute new
# contrasts without refitting.
fmri_glm_multirun.to_zarr(output_dir / "fit.zarr", overwrite=True)

# %%
# Generate a report
# -----------------
report = fmri_glm_multirun.generate_report(
    contrasts,
    bg_img=mean_img_,
    title="two-runs fMRI model fitting",
)

# %%
# We have several ways to access the report:

# report  # This report can be viewed in a notebook
# report.open_in_browser()
# or we can save as an html file
report.save_as_html(output_dir / "report.html")
print(f"Report written to {output_dir / 'report.html'}")
