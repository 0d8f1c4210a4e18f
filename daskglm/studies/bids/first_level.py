"""``first_level_from_bids``: nilearn 0.14.1's, with daskglm models, sample masks kept, CIFTI and remote runs.

The steps are those of :func:`nilearn.glm.first_level.first_level_from_bids`,
in its order and with its checks, warnings and errors (nilearn's helpers
through :mod:`daskglm.compat.nilearn`): argument checks, ``confounds_*``
arguments, ``t_r`` / ``slice_time_ref`` inferred from the sidecars, the
subjects, then per subject a daskglm :class:`~daskglm.FirstLevelModel`, its
runs, events, confounds and (``mask_img="derivatives"``) the intersection of
its brain masks.  The file queries are daskglm's
(:mod:`daskglm.studies.bids.query`), so that they also find what nilearn
0.14.1 does not:

- fMRIPrep's CIFTI-2 runs (``space_label="fsLR"``:
  ``..._space-fsLR_den-91k_bold.dtseries.nii``), returned as paths; they have
  no brain mask (their brain models are the mask);
- the sample masks of ``load_confounds`` (scrubbing, non-steady-state
  volumes), which nilearn drops: each run's confounds DataFrame carries its
  mask in ``attrs["sample_mask"]``, and ``FirstLevelModel.fit`` uses it;
- surface runs' confounds loaded run by run (nilearn 0.14.1 loads a two-run
  subject's ``hemi-L`` files as one left/right pair and returns the first
  run's confounds only).

Datasets on object storage are queried through a local view
(:mod:`daskglm.studies.bids.layout`); their runs stay remote and are returned
as sources that ``fit`` streams (:class:`~daskglm.io.remote.RemoteRunSource`,
:class:`~daskglm.io.cifti.RemoteCiftiRunSource`,
:class:`~daskglm.io.remote.RemoteGiftiRunSource`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from daskglm.compat.nilearn import (
    bids_entities,
    bids_files_filter,
    check_first_level_from_bids_args,
    check_params,
    check_repetition_time,
    check_slice_time_ref,
    find_events_files,
    infer_repetition_time,
    infer_slice_timing_start_time,
    list_valid_subjects,
    split_confounds_kwargs,
)
from daskglm.errors import DesignError
from daskglm.first_level.model import FirstLevelModel
from daskglm.io.cifti import RemoteCiftiRunSource
from daskglm.io.remote import RemoteGiftiRunSource, RemoteRunSource, is_url
from daskglm.studies.bids.layout import DatasetView, dataset_view, no_subject_hint
from daskglm.studies.bids.query import (
    RunFiles,
    confounds_files,
    image_filters,
    load_run_confounds,
    mask_files,
    run_files,
)

__all__ = ["first_level_from_bids", "query_subjects", "SubjectQuery", "DEFAULT_SPACE"]

#: nilearn's default ``space_label``.
DEFAULT_SPACE = "MNI152NLin2009cAsym"
#: ``first_level_from_bids``' arguments that are the models' parameters.
_MODEL_ARGS = ("t_r", "slice_time_ref", "hrf_model", "drift_model", "high_pass", "drift_order", "fir_delays",
               "min_onset", "target_affine", "target_shape", "smoothing_fwhm", "memory", "memory_level",
               "standardize", "signal_scaling", "noise_model", "verbose", "n_jobs", "minimize_memory")


@dataclass
class SubjectQuery:
    """One subject of :func:`query_subjects`: the model, its fit arguments and its runs' files.

    Attributes
    ----------
    model : daskglm.FirstLevelModel
    run_imgs : list
        Paths, ``SurfaceImage`` s (fsaverage5) or remote sources.
    events : list of pandas.DataFrame
    confounds : list of pandas.DataFrame, pandas.DataFrame, or None
        As :func:`first_level_from_bids` returns them (sample masks in ``attrs``).
    run_files : list of str
        One file per run, in the view (the ``hemi-L`` file of a GIfTI pair).
    mask_files : list of str
        The brain masks whose intersection is the model's ``mask_img``
        (``mask_img="derivatives"``; as nilearn, the first subject's serve
        the later ones), in the view; empty otherwise.
    """

    model: FirstLevelModel
    run_imgs: list
    events: list[pd.DataFrame]
    confounds: Any
    run_files: list[str]
    mask_files: list[str] = field(default_factory=list)


def _remote_run(view: DatasetView, path: str, runs: RunFiles):
    url = view.url_of(path)
    if runs.kind == "cifti":
        return RemoteCiftiRunSource(url, view.storage_options)
    if runs.kind == "gifti":  # the hemi-L / hemi-R pair on fsaverage5's pial mesh
        from nilearn.datasets import load_fsaverage

        urls = {"left": url, "right": view.url_of(path.replace("hemi-L", "hemi-R"))}
        return RemoteGiftiRunSource(urls, load_fsaverage()["pial"], view.storage_options)
    return RemoteRunSource(url, view.storage_options)


def _run_imgs(view: DatasetView, runs: RunFiles) -> list:
    """The runs as ``fit`` takes them: paths, nilearn's fsaverage5 ``SurfaceImage`` s, or remote sources."""
    if view.remote:
        return [_remote_run(view, path, runs) for path in runs.files]
    if runs.kind != "gifti":
        return list(runs.files)
    from nilearn.datasets import load_fsaverage
    from nilearn.surface import SurfaceImage

    # nilearn's assumption: the data are on fsaverage5's pial surface
    return [SurfaceImage(mesh=load_fsaverage()["pial"], data={"left": left, "right": right})
            for left, right in zip(runs.files, runs.right)]


def _is_derivatives(mask_img) -> bool:
    return isinstance(mask_img, str) and mask_img == "derivatives"


def _timing(p: dict, dataset_path: Path, derivatives_path: Path) -> tuple[Any, Any]:
    """nilearn's ``t_r`` and ``slice_time_ref``: the given values, else those of the sidecars (warnings)."""
    t_r, slice_time_ref, verbose = p["t_r"], p["slice_time_ref"], p["verbose"]
    filters = image_filters(p["task_label"], p["space_label"], p["img_filters"], verbose)
    inferred_t_r = infer_repetition_time(derivatives_path, filters, verbose)
    if inferred_t_r is None:  # the raw dataset's sidecars
        raw = bids_files_filter(task_label=p["task_label"], supported_filters=bids_entities()["raw"],
                                extra_filter=[f for f in p["img_filters"] if f[0] != "desc"], verbose=verbose)
        inferred_t_r = infer_repetition_time(dataset_path, raw, verbose)
    if t_r is None and inferred_t_r is not None:
        t_r = inferred_t_r
    if t_r is not None and t_r != inferred_t_r:
        warnings.warn(f"\n't_r' provided ({t_r}) is different from the value found in the BIDS dataset "
                      f"({inferred_t_r}).\nNote this may lead to the wrong model specification.",
                      RuntimeWarning, stacklevel=4)
    if t_r is not None:
        check_repetition_time(t_r)
    else:
        warnings.warn("\n't_r' not provided and cannot be inferred from BIDS metadata.\nIt will need to be set "
                      "manually in the list of models, otherwise their fit will throw an exception.",
                      RuntimeWarning, stacklevel=4)
    start_time = infer_slice_timing_start_time(derivatives_path, filters, verbose)
    if start_time is not None and t_r is not None:
        if not start_time < t_r:
            raise DesignError(f"The slice timing StartTime ({start_time}) of the BIDS sidecars is not below "
                             f"the repetition time ({t_r}).")
        inferred = start_time / t_r
    else:
        if slice_time_ref is None:
            warnings.warn("'slice_time_ref' not provided and cannot be inferred from metadata.\nIt will be "
                          "assumed that the slice timing reference is 0.0 percent of the repetition time.\n"
                          "If it is not the case it will need to be set manually in the generated list of "
                          "models.", UserWarning, stacklevel=4)
        inferred = 0.0
    if slice_time_ref is None:
        slice_time_ref = inferred
    if slice_time_ref != inferred:
        warnings.warn(f"'slice_time_ref' provided ({slice_time_ref}) is different from the value found in the "
                      f"BIDS dataset ({inferred}).\nNote this may lead to the wrong model specification.",
                      UserWarning, stacklevel=4)
    check_slice_time_ref(slice_time_ref)
    return t_r, slice_time_ref


def query_subjects(view: DatasetView, params: dict, confounds_kwargs: dict) -> list[SubjectQuery]:
    """:func:`first_level_from_bids` on a :class:`DatasetView` (no new listing of a remote dataset).

    Parameters
    ----------
    view : DatasetView
    params : dict
        ``first_level_from_bids``' named arguments but ``storage_options``
        (``dataset_path`` is replaced by the view's root).
    confounds_kwargs : dict
        Its ``confounds_*`` arguments (anything else: nilearn's RuntimeError).

    Returns
    -------
    list of SubjectQuery
        One per subject, in label order.
    """
    p = {**params, "dataset_path": str(view.root)}
    check_params(p)
    if p["memory"] is None:  # nilearn's default (kept: it is part of the models' parameters)
        from joblib import Memory

        p["memory"] = Memory(None)
    if p["space_label"] is None:
        p["space_label"] = DEFAULT_SPACE
    for name in ("sub_labels", "img_filters", "exclude_subjects"):
        p[name] = p[name] or []
    check_first_level_from_bids_args(
        dataset_path=p["dataset_path"], task_label=p["task_label"], space_label=p["space_label"],
        sub_labels=p["sub_labels"], exclude_subjects=p["exclude_subjects"], img_filters=p["img_filters"],
        derivatives_folder=p["derivatives_folder"])
    dataset_path = Path(p["dataset_path"]).absolute()
    load_kwargs, unknown = split_confounds_kwargs(dict(confounds_kwargs))
    if unknown:
        raise RuntimeError("Unknown keyword arguments. Keyword arguments should start with `confounds_` "
                           f"prefix: {unknown}")
    if p["drift_model"] is not None and load_kwargs is not None and "high_pass" in load_kwargs.get("strategy", []):
        verb = "duplicate" if p["drift_model"] == "cosine" else "conflict with"
        warnings.warn(f"Confounds will contain a high pass filter,\n that may {verb} the {p['drift_model']} one "
                      "used in the model.\n Remember to visualize your design matrix before fitting your model\n "
                      "to check that your model is not overspecified.", UserWarning, stacklevel=3)
    derivatives_path = (dataset_path / p["derivatives_folder"]).absolute()
    p["t_r"], p["slice_time_ref"] = _timing(p, dataset_path, derivatives_path)
    labels = list_valid_subjects(derivatives_path, p["sub_labels"])
    if not labels:  # nilearn's message, and the derivatives' pipeline folders that hold subjects, if any
        raise RuntimeError(f"\nNo subject found in:\n {derivatives_path}"
                           f"{no_subject_hint(dataset_path, p['derivatives_folder'])}")
    labels = sorted(set(labels) - set(p["exclude_subjects"]))
    mask_img, verbose = p["mask_img"], p["verbose"]
    query = dict(task_label=p["task_label"], img_filters=p["img_filters"], verbose=verbose)
    subjects, used_masks = [], []
    for label in labels:
        model = FirstLevelModel(**{k: p[k] for k in _MODEL_ARGS}, subject_label=label,
                                mask_img=None if _is_derivatives(mask_img) else mask_img)
        runs = run_files(derivatives_path, label, space_label=p["space_label"], **query)
        events = find_events_files(dataset_path, label, imgs=runs.files, **query)
        events = [pd.read_csv(path, sep="\t", index_col=None) for path in events]
        confounds = load_run_confounds(confounds_files(derivatives_path, label, runs=runs, **query), runs,
                                       load_kwargs)
        if _is_derivatives(mask_img):
            masks = mask_files(derivatives_path, label, space_label=p["space_label"], runs=runs, **query)
            if masks:  # nilearn's: this intersection is every later subject's mask_img too
                from nilearn.masking import intersect_masks

                mask_img = intersect_masks(masks, threshold=0.5, connected=False)
                model.mask_img = mask_img
                used_masks = list(masks)
        subjects.append(SubjectQuery(model, _run_imgs(view, runs), events, confounds, list(runs.files),
                                     list(used_masks) if not isinstance(model.mask_img, str) else []))
    return subjects


def first_level_from_bids(
    dataset_path,
    task_label,
    space_label=None,
    sub_labels=None,
    exclude_subjects=None,
    img_filters=None,
    t_r=None,
    slice_time_ref=None,
    hrf_model="glover",
    drift_model="cosine",
    high_pass=0.01,
    drift_order=1,
    fir_delays=None,
    min_onset=-24,
    mask_img=None,
    target_affine=None,
    target_shape=None,
    smoothing_fwhm=None,
    memory=None,
    memory_level=1,
    standardize=False,
    signal_scaling=0,
    noise_model="ar1",
    verbose=0,
    n_jobs=1,
    minimize_memory=True,
    derivatives_folder="derivatives",
    storage_options=None,
    **kwargs,
):
    """Create daskglm FirstLevelModels and fit arguments from a BIDS dataset.

    The signature, return values, warnings and errors are those of nilearn
    0.14.1's :func:`nilearn.glm.first_level.first_level_from_bids`; the
    models are :class:`daskglm.FirstLevelModel` s with the same parameters
    (``subject_label`` set, ``mask_img`` the intersection of the subject's
    ``desc-brain_mask`` images when ``mask_img="derivatives"``; as nilearn,
    the first subject's intersection then serves the later subjects too).

    **Sample masks are kept.**  When ``confounds_strategy`` makes
    ``load_confounds`` censor scans (``"scrub"``: high-motion volumes;
    ``"non_steady_state"``: the first volumes), nilearn returns the confounds
    but drops the sample masks.  Here each run's confounds DataFrame carries
    its mask (the kept scan indices) in ``attrs["sample_mask"]`` (absent when
    nothing is censored), and ``model.fit(imgs, events, confounds)`` uses the
    masks the confounds carry when no ``sample_masks`` is passed
    (:func:`daskglm.glm.sample_masks.sample_masks_from_confounds`), so fitting
    each returned model equals nilearn's ``FirstLevelModel`` fitted with
    ``load_confounds``' confounds *and* sample masks.  Pass
    ``sample_masks=[np.arange(n) for n in scans]`` (keep every scan) to fit
    as nilearn's ``first_level_from_bids`` models do.

    Parameters
    ----------
    dataset_path : str or path
        BIDS dataset root, local or an fsspec URL (``s3://bucket/ds``).
    task_label, space_label, sub_labels, exclude_subjects, img_filters
        As nilearn (``space_label`` defaults to ``"MNI152NLin2009cAsym"``;
        ``img_filters`` e.g. ``[("ses", "1"), ("acq", "mb")]``).  Not in nilearn 0.14.1:
        ``space_label="fsLR"`` finds fMRIPrep's CIFTI-2 runs
        (``sub-01[_ses-X]_task-T[_run-N]_space-fsLR_den-91k_bold.dtseries.nii``, with their
        ``.json`` sidecars and ``desc-confounds_timeseries.tsv``; ``img_filters`` may hold
        ``("den", "91k")``); no brain mask is looked for (``mask_img="derivatives"`` leaves
        ``mask_img`` None: every grayordinate).
    t_r, slice_time_ref
        As nilearn: inferred from the sidecars when None.
    mask_img : None, 'derivatives', path or image, default=None
        As nilearn: None computes nilearn's EPI mask of each subject's runs
        (the default of ``daskglm bids --mask epi`` and :func:`daskglm.fit_bids`
        too, so the command line and Python give the same maps);
        ``"derivatives"``, the intersection of the first subject's fMRIPrep
        ``desc-brain_mask`` images, for every subject.
    hrf_model, drift_model, high_pass, drift_order, fir_delays, min_onset,
    target_affine, target_shape, smoothing_fwhm, memory, memory_level, standardize,
    signal_scaling, noise_model, verbose, n_jobs, minimize_memory
        Model parameters, as nilearn.
    derivatives_folder : str, default="derivatives"
        Folder of the fMRIPrep derivatives, relative to ``dataset_path``
        (often ``"derivatives/fmriprep"``: a folder without subjects fails with
        nilearn's error, naming the folders in it that hold some).
    storage_options : dict, optional
        fsspec options for a URL dataset (``{"anon": True}`` for OpenNeuro).
        Not in nilearn's signature.
    **kwargs
        ``confounds_*`` arguments of :func:`nilearn.interfaces.fmriprep.load_confounds`
        (``confounds_strategy``, ``confounds_scrub``, ``confounds_fd_threshold``, ...).

    Returns
    -------
    models : list of daskglm.FirstLevelModel
        One per subject.
    models_run_imgs : list of list of str
        Per subject, the preprocessed runs: paths (``.nii.gz``, ``.dtseries.nii``) or
        nilearn ``SurfaceImage`` s (fsaverage5).  For a URL dataset, sources that ``fit``
        streams: :class:`~daskglm.io.remote.RemoteRunSource` (NIfTI),
        :class:`~daskglm.io.cifti.RemoteCiftiRunSource` (CIFTI),
        :class:`~daskglm.io.remote.RemoteGiftiRunSource` (a ``hemi-L`` / ``hemi-R`` pair on
        fsaverage5's pial mesh).
    models_events : list of list of pandas.DataFrame
    models_confounds : list of (list of pandas.DataFrame, or None)
        One DataFrame per run (surface runs included), each with its sample
        mask in ``attrs["sample_mask"]`` when scans are censored; None
        without confounds.  As nilearn 0.14.1, a one-run volume subject's
        ``load_confounds`` confounds are the DataFrame itself.
    """
    params = dict(locals())
    params.pop("storage_options")
    params.pop("kwargs")
    _check_local_args(params)
    with dataset_view(dataset_path, task_label, storage_options) as view:
        subjects = query_subjects(view, params, kwargs)
    return ([s.model for s in subjects], [s.run_imgs for s in subjects], [s.events for s in subjects],
            [s.confounds for s in subjects])


def _check_local_args(params: dict) -> None:
    """nilearn's argument checks (types, ``'dataset_path' does not exist``) for a local dataset.

    A URL dataset is checked on its local view (:func:`query_subjects`).
    """
    path = params["dataset_path"]
    if is_url(path) or str(path).startswith("file://"):
        return
    check_first_level_from_bids_args(
        dataset_path=path, task_label=params["task_label"], space_label=params["space_label"] or DEFAULT_SPACE,
        sub_labels=params["sub_labels"] or [], exclude_subjects=params["exclude_subjects"] or [],
        img_filters=params["img_filters"] or [], derivatives_folder=params["derivatives_folder"],
    )
