"""The seed workflow end to end on simulated FIAC-like data (``daskglm demo``).

:func:`run_demo` follows nilearn's "Simple example of two-runs fMRI model
fitting" step by step, with :func:`daskglm.data.fiac.make_fiac_like` in place of
``fetch_fiac_first_level``:

1. generate two runs with the FIAC design and known activations;
2. fit each run alone and compute ``DSt_minus_SSt``;
3. combine the two runs with :func:`daskglm.compute_fixed_effects`;
4. fit both runs at once and compute the same contrast;
5. compute the eight contrasts of the example (seven t, one F:
   :func:`daskglm.data.fiac.seed_contrasts`), write their z
   maps to NIfTI and plot them;
6. write the fit store and the HTML report.

Layout of ``out_dir``::

    data/                       the simulated dataset (runs, designs, mask, ground truth)
    results/<contrast>_z_map.nii.gz
    results/mean_img.nii.gz     background of the plots (streamed mean of run 1)
    plots/*.png                 stat maps, glass brains, design and contrast matrices,
                                AR(1) coefficient histogram (whitening diagnostics)
                                (glass brains of GLASS_BRAINS only, they are slow to draw)
    fit.zarr                    the multi-run fit (reopen with daskglm.open_model)
    report.html                 the self-contained report
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

__all__ = ["run_demo", "DEMO_SHAPE", "DEMO_N_SCANS"]

#: Grid of the demo (3 mm voxels): small enough for ~30 s on two cores.
DEMO_SHAPE = (32, 38, 32)
#: Scans per run, as in FIAC.
DEMO_N_SCANS = 191
#: Contrast of the run-by-run part of the example.
RUN_CONTRAST = "DSt_minus_SSt"
#: Contrasts also drawn as glass brains (~2 s each, so not all eight).
GLASS_BRAINS = ("DSt_minus_SSt", "Effects_of_interest")


def _load_designs(data: dict) -> list[pd.DataFrame]:
    designs = []
    for key in ("design_matrix1", "design_matrix2"):
        with np.load(data[key]) as npz:
            designs.append(pd.DataFrame(npz["X"], columns=[str(c) for c in npz["columns"]]))
    return designs


def _mean_image(path) -> nib.Nifti1Image:
    """Mean of a run, streamed volume chunk by volume chunk."""
    from daskglm.graph.resources import compute
    from daskglm.io.runs import as_run_source
    from daskglm.space.volume import run_mean_image

    source = as_run_source(path)
    (mean,) = compute(run_mean_image(source))
    return nib.Nifti1Image(mean.astype(np.float32), source.affine)


def _region_centre(truth_path) -> list[float]:
    img = nib.load(truth_path)
    ijk = np.argwhere(np.asarray(img.dataobj) > 0).mean(axis=0)
    return [float(round(v)) for v in nib.affines.apply_affine(img.affine, ijk)]


class _Steps:
    """Prints numbered steps with timings (or nothing when quiet)."""

    def __init__(self, verbose: bool):
        self.verbose = verbose
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.verbose:
            print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", flush=True)


def _save_stat(fig_fn: Callable, path: Path, *args, **kwargs) -> str:
    from daskglm.reporting.plotting import save_figure

    return save_figure(fig_fn(*args, **kwargs), path)


def _run_by_run(model_factory, imgs, designs, mask, mean_img, cut_coords, plots: Path, step) -> dict:
    """Steps 2-4: per-run fits, fixed effects, multi-run fit of DSt_minus_SSt."""
    from daskglm.first_level.fixed_effects import compute_fixed_effects
    from daskglm.reporting.plotting import plot_stat_map

    contrast_val = [[-1, -1, 1, 1]]
    summaries = []
    outputs = {}
    for i in range(2):
        step(f"Fitting run {i + 1} alone and computing {RUN_CONTRAST}")
        model = model_factory().fit(imgs[i], design_matrices=designs[i])
        summary = model.compute_contrast(np.array(contrast_val), output_type="all")
        summaries.append(summary)
        outputs[f"run{i + 1}"] = _save_stat(
            plot_stat_map, plots / f"{RUN_CONTRAST}_run{i + 1}.png", summary["z_score"],
            bg_img=mean_img, threshold=3.0, cut_coords=cut_coords,
            title=f"{RUN_CONTRAST}, run {i + 1}",
        )
    step("Fixed effects of the two runs (compute_fixed_effects)")
    _, _, fixed_stat, _ = compute_fixed_effects(
        [s["effect_size"] for s in summaries], [s["effect_variance"] for s in summaries], mask,
    )
    outputs["fixed_effects"] = _save_stat(
        plot_stat_map, plots / f"{RUN_CONTRAST}_fixed_effects.png", fixed_stat, bg_img=mean_img,
        threshold=3.0, cut_coords=cut_coords, title=f"{RUN_CONTRAST}, fixed effects",
    )
    return outputs


def _contrast_outputs(model, contrasts, mean_img, results: Path, plots: Path, step) -> dict:
    """Step 5: eight contrasts to NIfTI z maps, stat maps, contrast matrices, some glass brains."""
    from daskglm.reporting.plotting import plot_contrast_matrix, plot_glass_brain, plot_stat_map

    design = model.design_matrices_[0]
    z_maps = {}
    for index, (contrast_id, contrast_val) in enumerate(contrasts.items()):
        step(f"  Contrast {index + 1:02d} out of {len(contrasts)}: {contrast_id}")
        z_map = model.compute_contrast(contrast_val, output_type="z_score")
        path = results / f"{contrast_id}_z_map.nii.gz"
        z_map.to_filename(path)
        z_maps[contrast_id] = str(path)
        _save_stat(plot_stat_map, plots / f"{contrast_id}_stat_map.png", z_map, bg_img=mean_img,
                   threshold=3.0, title=contrast_id)
        if contrast_id in GLASS_BRAINS:
            # the simulated data are in FIAC-like scanner coordinates: centre for MNI's outline
            _save_stat(plot_glass_brain, plots / f"{contrast_id}_glass_brain.png", z_map,
                       threshold=3.0, title=contrast_id, recentre=True)
        _save_stat(plot_contrast_matrix, plots / f"{contrast_id}_contrast_matrix.png",
                   contrast_val, design, title=contrast_id)
    return z_maps


def run_demo(
    out_dir: str | os.PathLike = "daskglm_demo",
    shape: tuple[int, int, int] = DEMO_SHAPE,
    n_scans: int = DEMO_N_SCANS,
    seed: int = 0,
    smoothing_fwhm: float | None = 5.0,
    report: bool = True,
    verbose: bool = True,
) -> dict:
    """Run nilearn's two-runs example end to end with daskglm on simulated data.

    Parameters
    ----------
    out_dir : path, default='daskglm_demo'
        Output folder (created; existing demo files are overwritten).
    shape : tuple of 3 int, default=DEMO_SHAPE
        Grid of the simulated runs (3 mm voxels).
    n_scans : int, default=191
        Scans per run.
    seed : int, default=0
        Seed of the simulation.
    smoothing_fwhm : float or None, default=5.0
        Smoothing of the model, in mm (the example's 5 mm).
    report : bool, default=True
        Write ``report.html``.
    verbose : bool, default=True
        Print the steps with timings.

    Returns
    -------
    dict
        ``data`` (the dataset dict of :func:`~daskglm.data.fiac.make_fiac_like`),
        ``z_maps`` (contrast -> NIfTI path), ``plots`` (list of PNG paths),
        ``mean_img``, ``store`` and ``report`` (paths).
    """
    from daskglm.data.fiac import make_fiac_like, seed_contrasts
    from daskglm.first_level.model import FirstLevelModel
    from daskglm.reporting.plotting import plot_ar_coefficients, plot_design_matrix, save_figure

    step = _Steps(verbose)
    out = Path(out_dir)
    results, plots = out / "results", out / "plots"
    for folder in (results, plots):
        folder.mkdir(parents=True, exist_ok=True)
    step(f"Simulating a FIAC-like two-run dataset {tuple(shape)} x {n_scans} scans in {out / 'data'}")
    data = make_fiac_like(out / "data", shape=tuple(shape), n_scans=n_scans, seed=seed)
    imgs = [data["func1"], data["func2"]]
    designs = _load_designs(data)
    step("Streaming the mean image of run 1 (plot background)")
    mean_img = _mean_image(imgs[0])
    mean_img.to_filename(results / "mean_img.nii.gz")
    cut_coords = _region_centre(data["ground_truth"]["sentence_repetition"])

    def model_factory():
        return FirstLevelModel(mask_img=data["mask"], smoothing_fwhm=smoothing_fwhm,
                               minimize_memory=True)

    with warnings.catch_warnings():
        for message in (".*padded with zeros.*", ".*The same contrast will be used.*", ".*approximate fixed effects.*"):
            warnings.filterwarnings("ignore", message=message)
        run_plots = _run_by_run(model_factory, imgs, designs, data["mask"], mean_img, cut_coords,
                                plots, step)
        step("Fitting both runs at once")
        model = model_factory().fit(imgs, design_matrices=designs)
        model.persist()
        for i, design in enumerate(designs):
            save_figure(plot_design_matrix(design, title=f"Run {i + 1}"), plots / f"design_matrix_run{i + 1}.png")
        save_figure(plot_ar_coefficients(model.labels_), plots / "ar_coefficients.png")
        contrasts = seed_contrasts(designs[0].shape[1])
        step("Computing the eight contrasts of the example")
        z_maps = _contrast_outputs(model, contrasts, mean_img, results, plots, step)
        step(f"Writing the fit store {out / 'fit.zarr'}")
        model.to_zarr(out / "fit.zarr", overwrite=True)
        report_path = None
        if report:
            step("Writing the HTML report")
            report_path = model.generate_report(
                contrasts, title="two-runs fMRI model fitting (daskglm demo)", bg_img=mean_img,
                two_sided=True,  # SStSSp_minus_DStDSp and Deactivation are negative effects
                cluster_threshold=10,  # drop the few-voxel clusters of the noise from the tables
            ).save_as_html(out / "report.html")
    step(f"Done. Open {report_path or results} to look at the results.")
    return {
        "data": data,
        "z_maps": z_maps,
        "plots": sorted(str(p) for p in plots.glob("*.png")),
        "run_plots": run_plots,
        "mean_img": str(results / "mean_img.nii.gz"),
        "store": str(out / "fit.zarr"),
        "report": report_path,
    }
