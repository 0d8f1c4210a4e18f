"""A small BIDS + fMRIPrep-like study with known activations: :func:`make_bids_dataset`.

The layout is what ``nilearn.glm.first_level.first_level_from_bids`` and
``nilearn.interfaces.fmriprep.load_confounds`` expect from a raw BIDS dataset
with fMRIPrep derivatives::

    <root>/dataset_description.json
    <root>/task-<task>_bold.json                                  RepetitionTime, TaskName
    <root>/participants.tsv
    <root>/sub-01/ses-1/func/sub-01_ses-1_task-<task>_run-1_events.tsv
    <root>/<derivatives>/dataset_description.json
    <root>/<derivatives>/sub-01/ses-1/func/
        sub-01_ses-1_task-<task>_run-1_space-<space>_desc-preproc_bold.nii.gz
        sub-01_ses-1_task-<task>_run-1_space-<space>_desc-preproc_bold.json
        sub-01_ses-1_task-<task>_run-1_space-<space>_desc-brain_mask.nii.gz
        sub-01_ses-1_task-<task>_run-1_desc-confounds_timeseries.tsv   (+ .json)

With ``space="fsLR"`` the preprocessed runs are CIFTI-2 dense time series
named as fMRIPrep's ``--cifti-output`` (``..._run-1_space-fsLR_den-91k_bold.dtseries.nii``
with its ``.json`` sidecar; no brain mask: the brain models are the mask), on a
**reduced** grayordinate set (:func:`cifti_brain_models`: ``n_vertices`` per
hemisphere with a medial wall left out, and two small subcortical volume
structures, instead of fsLR-32k's 2 x 32,492 vertices and 31,870 voxels); the
sidecar says so (``"Reduced"``).

Confounds have fMRIPrep's columns (global_signal, csf, white_matter with their
``_derivative1`` / ``_power2`` expansions, six motion parameters and
expansions, framewise_displacement, dvars, std_dvars, rmsd, a/t/c/w CompCor
components with the JSON metadata ``load_confounds`` needs for aCompCor,
cosine drifts, ``non_steady_state_outlier`` columns), with fMRIPrep's ``n/a``
in the first row of derivatives, FD and DVARS.  A few framewise-displacement
spikes make ``load_confounds``' scrubbing remove scans.  Each run's signal is
a baseline, AR(1) noise, a motion-correlated term, a non-steady-state rise in
the first scans, and ``face``/``house`` responses of known amplitude
(:data:`ACTIVATIONS`) in two blobs.  Events, grids, noise and the NIfTI writer
are shared with the FIAC-like simulator (:mod:`daskglm.data.events`,
:mod:`daskglm.data.volumes`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from daskglm.data.events import response, spaced_events, task_regressors
from daskglm.data.volumes import ar1_noise, centred_affine, ellipsoid, save_mask, sphere, write_nifti_stream
from daskglm.io.cifti import is_cifti_space

__all__ = ["make_bids_dataset", "cifti_brain_models", "cifti_areas", "ACTIVATIONS", "CONDITIONS", "CIFTI_AREAS"]

CONDITIONS = ("face", "house")
#: Percent signal change per condition, in each blob (centre as a fraction of the grid).
ACTIVATIONS = {
    "face_area": dict(centre=(0.3, 0.5, 0.5), amplitudes={"face": 3.0, "house": 0.5}),
    "house_area": dict(centre=(0.7, 0.5, 0.5), amplitudes={"face": 0.5, "house": 3.0}),
}
#: Per area (CIFTI runs): (left-cortex, right-cortex) vertex ranges as fractions, and volume structure.
CIFTI_AREAS = {
    "face_area": dict(cortex=("CIFTI_STRUCTURE_CORTEX_LEFT", 0.1, 0.25), volume="CIFTI_STRUCTURE_THALAMUS_LEFT"),
    "house_area": dict(cortex=("CIFTI_STRUCTURE_CORTEX_RIGHT", 0.6, 0.75), volume="CIFTI_STRUCTURE_THALAMUS_RIGHT"),
}
_N_NONSTEADY = 2
#: AR(1) coefficient of the noise.
_NOISE_AR = 0.3
_COMPCOR = {"a_comp_cor": ("combined", 5), "c_comp_cor": ("CSF", 2), "w_comp_cor": ("WM", 2)}


def _brain(shape, shift) -> np.ndarray:
    """A subject's brain: a sphere of radius 0.9 in grid coordinates from -1 to 1, shifted by ``shift``."""
    return ellipsoid(shape, (0.9, 0.9, 0.9), shift)


def _blob(shape, centre) -> np.ndarray:
    return sphere(shape, centre, max(1.5, 0.15 * min(shape)))


def _motion_and_drift(conf: pd.DataFrame, n_scans: int) -> tuple[np.ndarray, np.ndarray]:
    """The motion-correlated term and the linear drift, in % of the baseline."""
    motion = conf["trans_x"].to_numpy() * 30 + conf["rot_z"].to_numpy() * 500
    return motion, np.linspace(-0.5, 0.5, n_scans)


def _confounds(n_scans: int, rng: np.random.Generator, spikes) -> tuple[pd.DataFrame, dict]:
    cols: dict[str, np.ndarray] = {}
    for name, level in (("global_signal", 500.0), ("csf", 650.0), ("white_matter", 480.0)):
        cols[name] = level + np.cumsum(rng.normal(0, 0.5, n_scans))
    motion = np.cumsum(rng.normal(0, 0.01, (n_scans, 6)), axis=0)
    for i, name in enumerate(("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")):
        cols[name] = motion[:, i] * (1.0 if name.startswith("trans") else 0.01)
    base = list(cols)
    for name in base:
        deriv = np.r_[np.nan, np.diff(cols[name])]
        cols[f"{name}_derivative1"] = deriv
        cols[f"{name}_power2"] = cols[name] ** 2
        cols[f"{name}_derivative1_power2"] = deriv**2
    fd = np.abs(rng.normal(0.08, 0.03, n_scans))
    fd[list(spikes)] = 0.7
    fd[0] = np.nan
    cols["framewise_displacement"] = fd
    std_dvars = np.abs(rng.normal(1.0, 0.1, n_scans))
    std_dvars[0] = np.nan
    cols["std_dvars"] = std_dvars
    cols["dvars"] = std_dvars * 20
    cols["rmsd"] = np.r_[np.nan, np.abs(rng.normal(0.05, 0.02, n_scans - 1))]
    meta: dict[str, dict] = {}
    for prefix, (mask, n) in _COMPCOR.items():
        explained = np.sort(rng.uniform(0.02, 0.2, n))[::-1]
        for k in range(n):
            name = f"{prefix}_{k:02d}"
            cols[name] = rng.normal(0, 0.05, n_scans)
            meta[name] = {"Method": "aCompCor", "Mask": mask, "Retained": True,
                          "VarianceExplained": float(explained[k]),
                          "CumulativeVarianceExplained": float(explained[: k + 1].sum()),
                          "SingularValue": float(50 * explained[k])}
    for k in range(3):
        name = f"t_comp_cor_{k:02d}"
        cols[name] = rng.normal(0, 0.05, n_scans)
        meta[name] = {"Method": "tCompCor", "Retained": True, "VarianceExplained": 0.1}
    t = np.arange(n_scans)
    for k in range(3):
        cols[f"cosine{k:02d}"] = np.sqrt(2 / n_scans) * np.cos(np.pi * (t + 0.5) * (k + 1) / n_scans)
    for k in range(_N_NONSTEADY):
        col = np.zeros(n_scans)
        col[k] = 1.0
        cols[f"non_steady_state_outlier{k:02d}"] = col
    return pd.DataFrame(cols), meta


def _run_volumes(shape, n_scans, t_r, events, conf, brain, rng):
    """The run's data (x, y, z, t) as float32: baseline, AR(1) noise, motion, non-steady state, tasks."""
    regressors = task_regressors(events, n_scans, t_r, drift_model=None)
    baseline = np.where(brain, 800.0 + 100 * rng.random(shape), 20.0 + 5 * rng.random(shape))
    data = np.empty((*shape, n_scans))
    noise = ar1_noise(rng, (*shape, n_scans), -1, _NOISE_AR)
    signal = np.zeros((*shape, n_scans))
    for spec in ACTIVATIONS.values():
        blob = _blob(shape, spec["centre"]) & brain
        signal[blob] += response(regressors, spec["amplitudes"])
    motion, drift = _motion_and_drift(conf, n_scans)
    data[:] = baseline[..., None] * (1 + (signal + motion + drift) / 100) + 4 * noise
    data[..., :_N_NONSTEADY] *= 1.15
    data[~brain] = baseline[~brain][:, None] + noise[~brain]
    return data.astype(np.float32)


def cifti_brain_models(n_vertices: int = 400, volume_shape: tuple[int, int, int] = (6, 5, 4)):
    """A reduced fsLR-like grayordinate set: two cortical surfaces and two subcortical volume parts.

    Parameters
    ----------
    n_vertices : int
        Vertices per hemisphere (fsLR-32k has 32,492); a tenth of them, in the
        middle of the index range, is a "medial wall" left out of the brain models.
    volume_shape : tuple of int
        Voxel grid (2 mm) of the volume parts: its left and right halves are
        the left and right thalamus.

    Returns
    -------
    nibabel.cifti2.BrainModelAxis
    """
    from nibabel import cifti2

    if n_vertices < 20:
        raise ValueError(f"n_vertices must be at least 20, got {n_vertices}.")
    cortex = np.ones(n_vertices, dtype=bool)
    cortex[int(0.45 * n_vertices): int(0.55 * n_vertices)] = False  # the medial wall
    affine = centred_affine(volume_shape, 2.0)
    left, right = np.zeros(volume_shape, bool), np.zeros(volume_shape, bool)
    half = volume_shape[0] // 2
    left[:half, 1:-1, 1:-1] = True
    right[half:, 1:-1, 1:-1] = True
    return (cifti2.BrainModelAxis.from_mask(cortex, name="CortexLeft")
            + cifti2.BrainModelAxis.from_mask(cortex, name="CortexRight")
            + cifti2.BrainModelAxis.from_mask(left, name="ThalamusLeft", affine=affine)
            + cifti2.BrainModelAxis.from_mask(right, name="ThalamusRight", affine=affine))


def cifti_areas(brain_models) -> dict[str, np.ndarray]:
    """The grayordinates of each activated area (:data:`CIFTI_AREAS`), as boolean arrays."""
    areas = {}
    for name, spec in CIFTI_AREAS.items():
        structure, lo, hi = spec["cortex"]
        n = brain_models.nvertices[structure]
        cortex = (brain_models.name == structure) & (brain_models.vertex >= lo * n) & (brain_models.vertex < hi * n)
        areas[name] = cortex | (brain_models.name == spec["volume"])
    return areas


def _run_grayordinates(brain_models, n_scans, t_r, events, conf, rng) -> np.ndarray:
    """A CIFTI run's (time, grayordinate) data, float32: the volume runs' model on every grayordinate."""
    regressors = task_regressors(events, n_scans, t_r, drift_model=None)
    n_el = len(brain_models)
    baseline = 800.0 + 100 * rng.random(n_el)
    noise = ar1_noise(rng, (n_scans, n_el), 0, _NOISE_AR)
    signal = np.zeros((n_scans, n_el))
    for name, where in cifti_areas(brain_models).items():
        signal[:, where] += response(regressors, ACTIVATIONS[name]["amplitudes"])[:, None]
    motion, drift = _motion_and_drift(conf, n_scans)
    data = baseline * (1 + (signal + (motion + drift)[:, None]) / 100) + 4 * noise
    data[:_N_NONSTEADY] *= 1.15
    return data.astype(np.float32)


def _write_cifti(out_dir, stem, space, density, brain_models, n_scans, t_r, events, conf, rng, sidecar):
    from daskglm.io.cifti import write_cifti_run

    data = _run_grayordinates(brain_models, n_scans, t_r, events, conf, rng)
    bold = out_dir / f"{stem}_space-{space}_den-{density}_bold.dtseries.nii"
    write_cifti_run(bold, brain_models, n_scans, t_r, lambda g0, g1: data[:, g0:g1])
    n_vertices = brain_models.nvertices["CIFTI_STRUCTURE_CORTEX_LEFT"]
    sidecar = {**sidecar, "grayordinates": density, "space": "HCP grayordinates", "surface": "fsLR",
               "surface_density": "32k", "volume": "MNI152NLin6Asym",
               "Reduced": (f"daskglm.data.bids: {len(brain_models)} grayordinates ({n_vertices} vertices per "
                           "hemisphere, small subcortical parts), not the 91,282 of fsLR den-91k")}
    _write_json(out_dir / f"{stem}_space-{space}_den-{density}_bold.json", sidecar)
    return bold


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def make_bids_dataset(
    path,
    n_subjects: int = 3,
    n_sessions: int = 2,
    n_runs: int = 1,
    task: str = "faces",
    shape: tuple[int, int, int] = (10, 12, 9),
    n_scans: int = 60,
    t_r: float = 2.0,
    space: str = "MNI152NLin2009cAsym",
    derivatives_folder: str = "derivatives",
    voxel_size: float = 3.0,
    slice_timing: bool = True,
    seed: int = 0,
    n_vertices: int = 400,
    density: str = "91k",
) -> dict:
    """Write a small BIDS dataset with fMRIPrep-like derivatives (see the module docstring).

    Parameters
    ----------
    path : str or path
        Dataset root (created).
    n_subjects, n_sessions, n_runs : int
        Subjects ``01``..; sessions ``1``.. (no ``ses-`` level if 0); runs per session.
    task : str
        Task label.
    shape : tuple of int
        Voxel grid; ``n_scans`` volumes per run, ``t_r`` seconds apart.
    space : str
        Space label of the derivatives; ``"fsLR"`` (a label the BIDS query reads as CIFTI,
        :func:`daskglm.io.cifti.is_cifti_space`): CIFTI-2 dense time series
        (``shape`` and ``voxel_size`` are then unused).
    derivatives_folder : str
        Folder of the derivatives under the root (nilearn's ``derivatives_folder``).
    slice_timing : bool
        Write ``StartTime`` (half a TR) in the derivatives' sidecars, as fMRIPrep does
        after slice-timing correction (nilearn then uses ``slice_time_ref=0.5``).
    seed : int
    n_vertices : int
        CIFTI runs: vertices per hemisphere of the reduced grayordinates (:func:`cifti_brain_models`).
    density : str
        CIFTI runs: the ``den-`` label of the file names (fMRIPrep's ``91k``; the data are reduced).

    Returns
    -------
    dict
        ``root``, ``derivatives``, ``task``, ``space``, ``subjects`` (labels),
        ``runs`` (``{subject: [preprocessed bold paths]}``), ``t_r``, ``shape``,
        ``n_scans``, ``activations`` (:data:`ACTIVATIONS`) and ``spikes``
        (``{bold path: scans with FD spikes}``); for CIFTI runs also ``cifti``
        (True), ``brain_models`` and ``areas`` (:func:`cifti_areas`).
    """
    cifti = is_cifti_space(space)
    root = Path(path).absolute()
    deriv = root / derivatives_folder
    rng = np.random.default_rng(seed)
    _write_json(root / "dataset_description.json",
                {"Name": "daskglm simulated study", "BIDSVersion": "1.8.0", "DatasetType": "raw"})
    _write_json(root / f"task-{task}_bold.json", {"RepetitionTime": t_r, "TaskName": task})
    _write_json(deriv / "dataset_description.json",
                {"Name": "fMRIPrep-like derivatives", "BIDSVersion": "1.8.0", "DatasetType": "derivative",
                 "GeneratedBy": [{"Name": "daskglm.data.bids"}]})
    subjects = [f"{i + 1:02d}" for i in range(n_subjects)]
    (root / "participants.tsv").write_text("participant_id\n" + "".join(f"sub-{s}\n" for s in subjects))
    affine = centred_affine(shape, voxel_size)
    brain_models = cifti_brain_models(n_vertices) if cifti else None
    runs: dict[str, list[str]] = {}
    spikes_of: dict[str, list[int]] = {}
    sessions = [f"ses-{k + 1}" for k in range(n_sessions)] or [None]
    for sub in subjects:
        brain = _brain(shape, rng.uniform(-0.05, 0.05, 3))
        runs[sub] = []
        for ses in sessions:
            for run in range(1, n_runs + 1):
                parts = [f"sub-{sub}", *([ses] if ses else []), f"task-{task}", f"run-{run}"]
                stem = "_".join(parts)
                rel = Path(f"sub-{sub}", *([ses] if ses else []), "func")
                raw_dir, out_dir = root / rel, deriv / rel
                raw_dir.mkdir(parents=True, exist_ok=True)
                out_dir.mkdir(parents=True, exist_ok=True)
                events = spaced_events(n_scans, t_r, rng, CONDITIONS)
                events.to_csv(raw_dir / f"{stem}_events.tsv", sep="\t", index=False)
                spikes = sorted(int(s) for s in rng.choice(np.arange(10, n_scans - 5), 2, replace=False))
                conf, meta = _confounds(n_scans, rng, spikes)
                conf.to_csv(out_dir / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False,
                            na_rep="n/a")
                _write_json(out_dir / f"{stem}_desc-confounds_timeseries.json", meta)
                sidecar = {"RepetitionTime": t_r, "SkullStripped": False, "TaskName": task}
                if slice_timing:
                    sidecar.update(StartTime=t_r / 2, SliceTimingCorrected=True)
                if cifti:
                    bold = _write_cifti(out_dir, stem, space, density, brain_models, n_scans, t_r, events, conf,
                                        rng, sidecar)
                    runs[sub].append(str(bold))
                    spikes_of[str(bold)] = spikes
                    continue
                data = _run_volumes(shape, n_scans, t_r, events, conf, brain, rng)
                bold = out_dir / f"{stem}_space-{space}_desc-preproc_bold.nii.gz"
                write_nifti_stream(bold, (*shape, n_scans), affine,
                                   (data[..., t] for t in range(n_scans)), t_r=t_r)
                _write_json(out_dir / f"{stem}_space-{space}_desc-preproc_bold.json", sidecar)
                save_mask(out_dir / f"{stem}_space-{space}_desc-brain_mask.nii.gz", brain, affine)
                runs[sub].append(str(bold))
                spikes_of[str(bold)] = spikes
    out = {"root": str(root), "derivatives": str(deriv), "derivatives_folder": derivatives_folder,
           "task": task, "space": space, "subjects": subjects, "runs": runs, "t_r": t_r,
           "shape": tuple(shape), "n_scans": n_scans, "activations": ACTIVATIONS, "spikes": spikes_of}
    if cifti:
        out.update(cifti=True, shape=(len(brain_models),), brain_models=brain_models,
                   areas=cifti_areas(brain_models))
    return out
