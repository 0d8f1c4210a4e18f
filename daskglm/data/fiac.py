"""Data: a FIAC-like simulator with known ground truth, and the real FIAC fetcher.

:func:`make_fiac_like` writes a two-run dataset laid out as nilearn's
``fetch_fiac_first_level`` returns it (``func1``, ``func2``,
``design_matrix1``, ``design_matrix2``, ``mask``), plus the ground truth.  The
design is FIAC's: four sentence conditions (same/different speaker x same/
different sentence) in blocks, plus the first sentence of each block, a cosine
drift basis and a constant - 13 columns, as in nilearn's example.

Runs are written volume by volume (gzip through ISA-L), so datasets larger
than memory can be generated.  The events, grids and the NIfTI writer are
shared with the BIDS simulator: :mod:`daskglm.data.events`,
:mod:`daskglm.data.volumes`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from daskglm.data.events import block_events, task_regressors
from daskglm.data.volumes import centred_affine, ellipsoid, save_mask, sphere, write_nifti_stream

__all__ = [
    "make_fiac_like",
    "fetch_fiac_first_level",
    "fiac_affine",
    "brain_mask",
    "seed_contrasts",
    "FIAC_CONDITIONS",
    "FIAC_CUT_COORDS",
]

FIAC_CONDITIONS = ("SSt-SSp", "SSt-DSp", "DSt-SSp", "DSt-DSp")

#: Regions of the ground truth: centre as a fraction of the voxel grid, radius
#: in voxels (scaled with the grid), and % signal change per condition
#: (SSt-SSp, SSt-DSp, DSt-SSp, DSt-DSp, FirstSt).  The affine is LAS (x
#: decreases with the first voxel index), so a first-axis fraction above 0.5
#: lies in the left hemisphere (x < 0 mm).
REGIONS = {
    "language_left": dict(centre=(0.70, 0.55, 0.55), amplitudes=(2.0, 2.0, 2.0, 2.0, 1.0)),
    "sentence_repetition": dict(centre=(0.30, 0.60, 0.50), amplitudes=(0.5, 0.5, 2.5, 2.5, 0.0)),
    "speaker_repetition": dict(centre=(0.50, 0.30, 0.40), amplitudes=(0.5, 2.5, 0.5, 2.5, 0.0)),
}


#: ``cut_coords`` of nilearn's two-runs example, in FIAC's scanner coordinates (mm).
FIAC_CUT_COORDS = (-129.0, -126.0, 49.0)


def fiac_affine(shape, voxel_size: float, coordinates: str = "fiac") -> np.ndarray:
    """The simulator's LAS affine.

    ``"fiac"``: scanner coordinates like the real FIAC data, placed so that the
    example's ``cut_coords`` (:data:`FIAC_CUT_COORDS`) fall on the centre of the
    sentence-repetition region (where ``DSt_minus_SSt`` activates), so the seed
    script runs unchanged.  ``"centred"``: the field of view centred on 0 mm,
    closer to MNI space (for glass brains).
    """
    affine = centred_affine(shape, voxel_size, flip_x=True)
    if coordinates == "fiac":
        centre = np.asarray(REGIONS["sentence_repetition"]["centre"]) * (np.asarray(shape) - 1)
        affine[:3, 3] = np.asarray(FIAC_CUT_COORDS) - np.diag(affine)[:3] * np.round(centre)
    elif coordinates != "centred":
        raise ValueError(f"coordinates must be 'fiac' or 'centred', got {coordinates!r}.")
    return affine


def _design(n_scans: int, t_r: float, events: pd.DataFrame) -> pd.DataFrame:
    # SPM's 128 s high-pass cut-off: with FIAC's 191 scans at TR 2.5 s this gives
    # 7 cosine drifts, hence nilearn's example's 13 columns (5 conditions, 7
    # drifts, constant).  Shorter runs get fewer drifts.
    design = task_regressors(events, n_scans, t_r, hrf_model="spm", drift_model="cosine", high_pass=1.0 / 128)
    conds = [*FIAC_CONDITIONS, "FirstSt"]
    drifts = [c for c in design.columns if c.startswith("drift")]
    return design[conds + drifts + ["constant"]]


#: The simulated brain: an ellipsoid in grid coordinates running from -1 to 1 (:func:`brain_mask`).
BRAIN_RADII, BRAIN_CENTRE = (0.88, 0.94, 0.86), (0.0, 0.0, -0.04)


def brain_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """The simulated brain on a grid of ``shape``: the mask :func:`make_fiac_like` writes.

    Parameters
    ----------
    shape : tuple of 3 int

    Returns
    -------
    ndarray of bool, shape ``shape``
        The ellipsoid :data:`BRAIN_RADII` around :data:`BRAIN_CENTRE`, in grid
        coordinates running from -1 to 1 along each axis.
    """
    return ellipsoid(shape, BRAIN_RADII, BRAIN_CENTRE)


def seed_contrasts(n_columns: int) -> dict[str, np.ndarray]:
    """The eight contrasts of nilearn's two-runs example, for FIAC's design.

    The first five design columns are the conditions (:data:`FIAC_CONDITIONS`
    and ``FirstSt``); the last contrast is an F contrast over them.

    Parameters
    ----------
    n_columns : int
        Columns of the design matrix (13 for FIAC's: 5 conditions, the drifts,
        the constant).

    Returns
    -------
    dict of str to ndarray
        Contrast name to weights, in the example's order.
    """
    return {
        "SStSSp_minus_DStDSp": np.array([[1, 0, 0, -1]]),
        "DStDSp_minus_SStSSp": np.array([[-1, 0, 0, 1]]),
        "DSt_minus_SSt": np.array([[-1, -1, 1, 1]]),
        "DSp_minus_SSp": np.array([[-1, 1, -1, 1]]),
        "DSt_minus_SSt_for_DSp": np.array([[0, -1, 0, 1]]),
        "DSp_minus_SSp_for_DSt": np.array([[0, 0, -1, 1]]),
        "Deactivation": np.array([[-1, -1, -1, -1, 4]]),
        "Effects_of_interest": np.eye(n_columns)[:5, :],  # an F contrast
    }


def _region_masks(shape) -> dict[str, np.ndarray]:
    radius = max(2.0, 0.09 * min(shape))
    return {name: sphere(shape, spec["centre"], radius) for name, spec in REGIONS.items()}


def make_fiac_like(
    out_dir,
    shape=(40, 48, 40),
    n_scans: int = 191,
    t_r: float = 2.5,
    voxel_size: float = 3.0,
    noise_level: float = 1.0,
    ar_range=(0.2, 0.5),
    n_runs: int = 2,
    seed: int = 0,
    compress: bool = True,
    coordinates: str = "fiac",
) -> dict:
    """Generate a FIAC-like dataset with known activations.

    Parameters
    ----------
    out_dir : path
        Folder to write into (created).
    shape : tuple of 3 int
        Grid size; the brain is an ellipsoid filling most of it.
    n_scans : int
        Volumes per run.
    t_r : float
        Repetition time in seconds.
    voxel_size : float
        Isotropic voxel size in mm.
    noise_level : float
        Noise standard deviation in % of the baseline signal.
    ar_range : (float, float)
        Range of the voxels' AR(1) noise coefficient (varies smoothly).
    n_runs : int
    seed : int
    compress : bool
        ``.nii.gz`` if True, else ``.nii``.
    coordinates : {'fiac', 'centred'}
        World coordinates of the grid (:func:`fiac_affine`); with ``'fiac'``
        the example's ``cut_coords=[-129, -126, 49]`` are inside the brain.

    Returns
    -------
    dict
        ``func1``, ``func2`` (paths), ``design_matrix1``, ``design_matrix2``
        (``.npz`` paths, key ``X``), ``events1``, ``events2`` (TSV paths),
        ``mask``, ``ground_truth`` (dict of region -> NIfTI path), ``t_r``,
        ``description``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    affine = fiac_affine(shape, voxel_size, coordinates)
    brain = brain_mask(shape)
    regions = _region_masks(shape)
    regions = {k: v & brain for k, v in regions.items()}
    grid = np.meshgrid(*[np.linspace(0, 1, s) for s in shape], indexing="ij")
    baseline = (800 + 400 * grid[1] + 200 * np.sin(3 * grid[2])) * brain + 20
    rho = ar_range[0] + (ar_range[1] - ar_range[0]) * (0.5 + 0.5 * np.sin(4 * grid[0] + 2 * grid[2]))
    amplitudes = np.zeros((*shape, 5), dtype=np.float64)
    for name, m in regions.items():
        amplitudes[m] += np.asarray(REGIONS[name]["amplitudes"])
    ext = ".nii.gz" if compress else ".nii"
    result: dict = {"t_r": t_r}
    for run in range(1, n_runs + 1):
        events = block_events(n_scans, t_r, rng, FIAC_CONDITIONS)
        design = _design(n_scans, t_r, events)
        events_path = out / f"run{run}_events.tsv"
        events.to_csv(events_path, sep="\t", index=False)
        design_path = out / f"run{run}_design.npz"
        np.savez(design_path, X=design.to_numpy(), columns=np.array(design.columns, dtype=str))
        task = design.to_numpy()[:, :5]
        run_rng = np.random.default_rng([seed, run])

        def volumes(task=task, run_rng=run_rng):
            noise = run_rng.standard_normal(shape)
            innov = np.sqrt(1 - rho**2)
            for t in range(n_scans):
                if t:
                    noise = rho * noise + innov * run_rng.standard_normal(shape)
                signal = 1.0 + 0.01 * (amplitudes @ task[t]) + 0.01 * noise_level * noise
                # scanner noise outside the brain, as in real EPI (Rayleigh-like)
                background = np.abs(run_rng.standard_normal(shape)) * 8.0 * ~brain
                yield (baseline * signal * brain + background).astype(np.float32)

        func_path = out / f"run{run}_bold{ext}"
        write_nifti_stream(func_path, (*shape, n_scans), affine, volumes(), t_r=t_r)
        result[f"func{run}"] = str(func_path)
        result[f"design_matrix{run}"] = str(design_path)
        result[f"events{run}"] = str(events_path)
    mask_path = out / f"mask{ext}"
    save_mask(mask_path, brain, affine)
    result["mask"] = str(mask_path)
    truth = {}
    for name, m in regions.items():
        p = out / f"truth_{name}{ext}"
        save_mask(p, m, affine)
        truth[name] = str(p)
    result["ground_truth"] = truth
    result["description"] = (
        "FIAC-like simulated dataset (daskglm.data.fiac.make_fiac_like): "
        f"{n_runs} runs of {shape} x {n_scans} scans, TR={t_r}s, AR(1) noise with rho in "
        f"{ar_range}, noise {noise_level}% of baseline. Regions: "
        + json.dumps({k: REGIONS[k]["amplitudes"] for k in REGIONS})
    )
    (out / "dataset.json").write_text(json.dumps({k: v for k, v in result.items()}, indent=1))
    return result


def fetch_fiac_first_level(data_dir=None, verbose: int = 1) -> dict:
    """The real FIAC first-level data, through nilearn's fetcher (needs internet once).

    Files already in ``data_dir`` (laid out as nilearn downloads them:
    ``fiac_nilearn.glm/nipy-data-0.2/data/fiac/fiac0/run{1,2}.nii.gz``,
    ``run{1,2}_design.npz`` and ``mask.nii.gz``) are used without network.
    Returns nilearn's Bunch with ``func1``, ``func2`` and ``mask`` (paths) and
    ``design_matrix1``, ``design_matrix2`` (with nilearn >= 0.12, DataFrames
    whose columns are the conditions; older nilearn gave ``.npz`` paths).
    """
    from nilearn.datasets import fetch_fiac_first_level as _fetch

    if data_dir is not None:
        data_dir = os.fspath(data_dir)
    return _fetch(data_dir=data_dir, verbose=verbose)
