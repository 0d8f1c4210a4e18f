"""``first_level_from_bids``: nilearn's function, with daskglm models and the sample masks kept.

The BIDS queries, checks, warnings, ``t_r`` / ``slice_time_ref`` inference,
``mask_img="derivatives"`` and confound loading are nilearn's own
(:func:`nilearn.glm.first_level.first_level_from_bids` is called as is); each
returned nilearn model is then replaced by a daskglm
:class:`~daskglm.FirstLevelModel` with the same parameters.  What nilearn
drops is kept: the sample masks of ``load_confounds`` (scrubbing,
non-steady-state volumes), as each model's ``sample_masks_``.  Datasets on
object storage are queried through a local view (:mod:`daskglm.studies.bids.layout`);
their runs stay remote and are returned as
:class:`~daskglm.io.remote.RemoteRunSource` objects.  Surface runs
(``space_label="fsaverage5"``) are nilearn's ``SurfaceImage`` s; their
``load_confounds`` confounds and sample masks are loaded run by run from the
``hemi-L`` files (nilearn 0.14.1 loads a two-run subject's as one left/right
pair and returns the first run's confounds only).  CIFTI-2 runs
(``space_label="fsLR"``: fMRIPrep's ``..._space-fsLR_den-91k_bold.dtseries.nii``),
which nilearn 0.14.1 does not look for, are found by nilearn's own query with
its image lookup swapped for one of ``bold.dtseries.nii`` files
(:func:`cifti_queries`); they have no brain mask (their brain models are the
mask) and are returned as paths (URLs: :class:`~daskglm.io.cifti.RemoteCiftiRunSource`).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import threading
from typing import Any

from daskglm.errors import ConfoundsError
from daskglm.first_level.model import FirstLevelModel
from daskglm.io.cifti import RemoteCiftiRunSource
from daskglm.io.gifti import is_surface_image
from daskglm.io.remote import RemoteGiftiRunSource, RemoteRunSource, is_url
from daskglm.studies.bids.layout import DatasetView, dataset_view

__all__ = ["first_level_from_bids", "query_view", "load_sample_masks", "daskglm_params", "is_cifti_space",
           "cifti_queries", "CIFTI_SPACES"]

#: Space labels whose fMRIPrep runs are CIFTI-2 dense time series (``_bold.dtseries.nii``).
CIFTI_SPACES = ("fsLR",)
_SWAP_LOCK = threading.RLock()
#: nilearn lookups replaced while any cifti_queries block runs, and how many blocks run
_SWAP: dict = {"depth": 0, "saved": None}
#: the ``remote`` flag of the cifti_queries block of this thread / context (None: no block)
_QUERY: contextvars.ContextVar = contextvars.ContextVar("daskglm_bids_query", default=None)
#: nilearn 0.14's private helpers that the CIFTI / remote-GIfTI lookups use
_NILEARN_HELPERS = ("_get_processed_imgs", "_get_masks_files", "_make_bids_files_filter",
                    "_report_found_files", "_check_bids_image_list")

_MODEL_PARAMS = [n for n in inspect.signature(FirstLevelModel.__init__).parameters if n != "self"]


def daskglm_params(nilearn_model) -> dict[str, Any]:
    """The parameters of a nilearn ``FirstLevelModel`` that daskglm's model takes."""
    params = nilearn_model.get_params(deep=False)
    return {k: v for k, v in params.items() if k in _MODEL_PARAMS}


def load_sample_masks(run_imgs: list[str], kwargs_load_confounds: dict | None) -> list | None:
    """``load_confounds``' sample masks for one subject's runs (None if none is needed).

    Parameters
    ----------
    run_imgs : list of str
        Preprocessed run paths (fMRIPrep names, next to their confounds files).
    kwargs_load_confounds : dict or None
        ``load_confounds`` arguments, as nilearn derives them from the ``confounds_*``
        keyword arguments; ``None`` or ``{}`` means no ``load_confounds`` call.

    Returns
    -------
    list of (ndarray or None), or None
        Per run, the indices of the scans to keep (nilearn's ``sample_masks``).
    """
    if not kwargs_load_confounds or not run_imgs:
        return None
    from nilearn.interfaces.fmriprep import load_confounds

    _, masks = load_confounds(img_files=list(run_imgs), **kwargs_load_confounds)
    masks = list(masks) if isinstance(masks, (list, tuple)) else [masks]
    return masks if any(m is not None for m in masks) else None


def _confounds_kwargs(kwargs: dict) -> dict | None:
    from nilearn.glm.first_level.first_level import _check_kwargs_load_confounds

    return _check_kwargs_load_confounds(**kwargs)[0]


def _left_hemisphere_runs(view: DatasetView, params: dict, sub_label: str) -> list[str]:
    """A subject's ``hemi-L`` ``.func.gii`` runs, selected (and ordered) as nilearn selects them."""
    from nilearn.glm.first_level.first_level import _make_bids_files_filter
    from nilearn.interfaces.bids import get_bids_files
    from nilearn.interfaces.bids.utils import bids_entities

    filters = _make_bids_files_filter(
        task_label=params["task_label"], space_label=params["space_label"],
        supported_filters=bids_entities()["raw"] + bids_entities()["derivatives"],
        extra_filter=params["img_filters"] or [], verbose=0,
    )
    return get_bids_files(main_path=view.root / params["derivatives_folder"], modality_folder="func",
                          file_tag="bold", file_type="func.gii", sub_label=sub_label,
                          filters=[*filters, ("hemi", "L")])


def _surface_confounds(view, params, sub_label, n_runs, confounds_kwargs):
    """Per-run ``load_confounds`` confounds and sample masks of a subject's surface runs.

    nilearn 0.14.1 hands a subject's ``hemi-L`` files to ``load_confounds`` in one
    call, which reads two files as one left/right pair (one DataFrame, the first
    run's, for a two-run subject); each run is loaded on its own here.
    """
    from nilearn.interfaces.fmriprep import load_confounds

    runs = _left_hemisphere_runs(view, params, sub_label)
    if len(runs) != n_runs:  # pragma: no cover - nilearn checked the same query
        raise ConfoundsError(f"sub-{sub_label}: {len(runs)} hemi-L runs found for {n_runs} surface images.")
    loaded = [load_confounds(img_files=run, **confounds_kwargs) for run in runs]
    masks = [mask for _, mask in loaded]
    return [frame for frame, _ in loaded], (masks if any(m is not None for m in masks) else None)


def is_cifti_space(space_label) -> bool:
    """Whether a space label names CIFTI-2 runs (:data:`CIFTI_SPACES`: fMRIPrep's ``fsLR``)."""
    return isinstance(space_label, str) and space_label.startswith(CIFTI_SPACES)


def _is_gifti_space(space_label) -> bool:
    """nilearn 0.14.1's test for its GIfTI branch (a substring of ``"fsaverage5"``)."""
    return isinstance(space_label, str) and space_label != "" and space_label in "fsaverage5"


def _cifti_imgs(original, remote: bool, **kwargs):
    """nilearn's ``_get_processed_imgs`` for ``bold.dtseries.nii`` runs (same filters, report, checks).

    On a remote view, GIfTI runs are returned as their ``hemi-L`` paths (nilearn
    would load the view's empty placeholders into ``SurfaceImage`` s).
    """
    gifti = remote and _is_gifti_space(kwargs["space_label"])
    if not (gifti or is_cifti_space(kwargs["space_label"])):
        return original(**kwargs)
    from nilearn.glm.first_level.first_level import (
        _check_bids_image_list,
        _make_bids_files_filter,
        _report_found_files,
    )
    from nilearn.interfaces.bids import get_bids_files
    from nilearn.interfaces.bids.utils import bids_entities

    filters = _make_bids_files_filter(
        task_label=kwargs["task_label"], space_label=kwargs["space_label"],
        supported_filters=bids_entities()["raw"] + bids_entities()["derivatives"],
        extra_filter=kwargs["img_filters"], verbose=kwargs["verbose"],
    )
    query = dict(main_path=kwargs["derivatives_path"], modality_folder="func", file_tag="bold",
                 sub_label=kwargs["sub_label"])
    if gifti:
        imgs = get_bids_files(file_type="func.gii", filters=[*filters, ("hemi", "L")], **query)
        right = get_bids_files(file_type="func.gii", filters=[*filters, ("hemi", "R")], **query)
        if [p.replace("hemi-L", "hemi-R") for p in imgs] != right:
            raise FileNotFoundError(f"sub-{kwargs['sub_label']}: the hemi-L and hemi-R runs do not pair up.")
    else:
        imgs = get_bids_files(file_type="dtseries.nii", filters=filters, **query)
    _report_found_files(files=imgs, text="preprocessed BOLD (hemi-L)" if gifti else "preprocessed BOLD (CIFTI)", sub_label=kwargs["sub_label"],
                        filters=filters, verbose=kwargs["verbose"])
    _check_bids_image_list(imgs, kwargs["sub_label"], filters)
    return imgs, imgs


def _cifti_masks(original, **kwargs):
    """No brain-mask lookup for CIFTI runs: their brain models are the mask."""
    return [] if is_cifti_space(kwargs["space_label"]) else original(**kwargs)


def _dispatch_imgs(**kwargs):
    """nilearn's image lookup, or ours inside a :func:`cifti_queries` block of this thread."""
    remote, original = _QUERY.get(), _SWAP["saved"][0]
    return original(**kwargs) if remote is None else _cifti_imgs(original, remote, **kwargs)


def _dispatch_masks(**kwargs):
    """nilearn's mask lookup, or ours inside a :func:`cifti_queries` block of this thread."""
    original = _SWAP["saved"][1]
    return original(**kwargs) if _QUERY.get() is None else _cifti_masks(original, **kwargs)


@contextlib.contextmanager
def cifti_queries(space_label, remote: bool = False):
    """Within the block, nilearn's ``first_level_from_bids`` finds CIFTI runs for a CIFTI space.

    nilearn 0.14.1 looks for ``bold.nii*`` (volumes) or ``hemi-L/R`` ``bold.func.gii``
    (fsaverage5) runs only; for a :func:`is_cifti_space` label its image and mask
    lookups are swapped for ones of ``bold.dtseries.nii`` runs (nilearn's filters,
    checks and messages) and of no mask; with ``remote``, GIfTI runs are found
    without loading them (their ``hemi-L`` paths: the view's files are empty
    placeholders).  The swapped lookups dispatch on a context variable: calls
    from other threads, or outside any block, go to nilearn's own lookups.  The
    originals are restored when the last block ends.

    Raises
    ------
    ImportError
        If the installed nilearn lacks the private helpers of nilearn 0.14 that
        these lookups use.
    """
    if not (is_cifti_space(space_label) or (remote and _is_gifti_space(space_label))):
        yield
        return
    import nilearn
    from nilearn.glm.first_level import first_level as module

    missing = [name for name in _NILEARN_HELPERS if not hasattr(module, name)]
    if missing:
        raise ImportError(f"space_label={space_label!r} queries use nilearn 0.14's first_level_from_bids helpers "
                          f"{missing}, absent from nilearn {nilearn.__version__}; install nilearn 0.14.x.")
    with _SWAP_LOCK:
        if _SWAP["depth"] == 0:
            _SWAP["saved"] = module._get_processed_imgs, module._get_masks_files
            module._get_processed_imgs, module._get_masks_files = _dispatch_imgs, _dispatch_masks
        _SWAP["depth"] += 1
    token = _QUERY.set(bool(remote))
    try:
        yield
    finally:
        _QUERY.reset(token)
        with _SWAP_LOCK:
            _SWAP["depth"] -= 1
            if _SWAP["depth"] == 0:
                module._get_processed_imgs, module._get_masks_files = _SWAP["saved"]
                _SWAP["saved"] = None


def _remote_run(view: DatasetView, path):
    url = view.url_of(path)
    if str(path).endswith(".dtseries.nii"):
        return RemoteCiftiRunSource(url, view.storage_options)
    if str(path).endswith(".func.gii"):  # a hemi-L file (cifti_queries): the pair on fsaverage5's pial mesh
        from nilearn.datasets import load_fsaverage

        urls = {"left": url, "right": view.url_of(str(path).replace("hemi-L", "hemi-R"))}
        return RemoteGiftiRunSource(urls, load_fsaverage()["pial"], view.storage_options)
    return RemoteRunSource(url, view.storage_options)


def _convert(view: DatasetView, params: dict, nl_models, models_run_imgs, confounds_kwargs, models_confounds):
    models, run_imgs_out, confounds_out = [], [], []
    for nl_model, run_imgs, given in zip(nl_models, models_run_imgs, models_confounds):
        model = FirstLevelModel(**daskglm_params(nl_model))
        surface = any(is_surface_image(img) or str(img).endswith(".func.gii") for img in run_imgs)
        if surface and given is not None and confounds_kwargs:
            given, model.sample_masks_ = _surface_confounds(view, params, nl_model.subject_label,
                                                            len(run_imgs), confounds_kwargs)
        else:
            model.sample_masks_ = load_sample_masks(run_imgs, confounds_kwargs) if given is not None else None
        models.append(model)
        confounds_out.append(given)
        if view.remote:
            run_imgs = [_remote_run(view, p) for p in run_imgs]
        run_imgs_out.append(list(run_imgs))
    return models, run_imgs_out, confounds_out


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
    0.14.1's :func:`nilearn.glm.first_level.first_level_from_bids` (which does
    the queries); the models are :class:`daskglm.FirstLevelModel` s with the
    same parameters (``subject_label`` set, ``mask_img`` the intersection of
    the subject's ``desc-brain_mask`` images when ``mask_img="derivatives"``).

    **Sample masks are kept.**  When ``confounds_strategy`` makes
    ``load_confounds`` censor scans (``"scrub"``: high-motion volumes;
    ``"non_steady_state"``: the first volumes), nilearn returns the confounds
    but drops the sample masks.  Here each model has a ``sample_masks_``
    attribute (one array of kept scan indices, or None, per run; None when
    nothing is censored) that a plain ``model.fit(imgs, events, confounds)``
    uses when no ``sample_masks`` is passed, so fitting each returned model
    equals nilearn's ``FirstLevelModel`` fitted with ``load_confounds``'
    confounds *and* sample masks.

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
    hrf_model, drift_model, high_pass, drift_order, fir_delays, min_onset, mask_img,
    target_affine, target_shape, smoothing_fwhm, memory, memory_level, standardize,
    signal_scaling, noise_model, verbose, n_jobs, minimize_memory
        Model parameters, as nilearn.
    derivatives_folder : str, default="derivatives"
        Folder of the fMRIPrep derivatives, relative to ``dataset_path``.
    storage_options : dict, optional
        fsspec options for a URL dataset (``{"anon": True}`` for OpenNeuro).
        Not in nilearn's signature.
    **kwargs
        ``confounds_*`` arguments of :func:`nilearn.interfaces.fmriprep.load_confounds`
        (``confounds_strategy``, ``confounds_scrub``, ``confounds_fd_threshold``, ...).

    Returns
    -------
    models : list of daskglm.FirstLevelModel
        One per subject, each with ``sample_masks_``.
    models_run_imgs : list of list of str
        Per subject, the preprocessed runs: paths (``.nii.gz``, ``.dtseries.nii``) or
        nilearn ``SurfaceImage`` s (fsaverage5).  For a URL dataset, sources that ``fit``
        streams: :class:`~daskglm.io.remote.RemoteRunSource` (NIfTI),
        :class:`~daskglm.io.cifti.RemoteCiftiRunSource` (CIFTI),
        :class:`~daskglm.io.remote.RemoteGiftiRunSource` (a ``hemi-L`` / ``hemi-R`` pair on
        fsaverage5's pial mesh).
    models_events : list of list of pandas.DataFrame
    models_confounds : list of list of pandas.DataFrame, or None per subject
        One DataFrame per run (surface runs included).
    """
    params = dict(locals())
    params.pop("storage_options")
    params.pop("kwargs")
    _check_local_args(params)
    with dataset_view(dataset_path, task_label, storage_options) as view:
        return query_view(view, params, kwargs)


def _check_local_args(params: dict) -> None:
    """nilearn's argument checks (types, ``'dataset_path' does not exist``) for a local dataset.

    A URL dataset is checked on its local view (:func:`query_view`).
    """
    path = params["dataset_path"]
    if is_url(path) or str(path).startswith("file://"):
        return
    from nilearn.glm.first_level.first_level import _check_args_first_level_from_bids

    _check_args_first_level_from_bids(
        dataset_path=path, task_label=params["task_label"],
        space_label=params["space_label"] or "MNI152NLin2009cAsym",
        sub_labels=params["sub_labels"] or [], exclude_subjects=params["exclude_subjects"] or [],
        img_filters=params["img_filters"] or [], derivatives_folder=params["derivatives_folder"],
    )


def query_view(view: DatasetView, params: dict, confounds_kwargs: dict):
    """:func:`first_level_from_bids` on a :class:`DatasetView` (no new listing of a remote dataset).

    ``params`` are ``first_level_from_bids``' named arguments (``dataset_path`` is
    replaced by the view's root); ``confounds_kwargs`` its ``confounds_*`` arguments.
    """
    from nilearn.glm.first_level import first_level_from_bids as nilearn_first_level_from_bids

    params = {**params, "dataset_path": str(view.root)}
    with cifti_queries(params.get("space_label"), view.remote):
        nl_models, run_imgs, events, confounds = nilearn_first_level_from_bids(**params, **confounds_kwargs)
    models, run_imgs, confounds = _convert(view, params, nl_models, run_imgs,
                                           _confounds_kwargs(confounds_kwargs), confounds)
    return models, run_imgs, events, confounds
