"""A BIDS study in one dask graph: :func:`fit_bids`.

Each subject is queried as :func:`daskglm.first_level_from_bids` queries it
(nilearn's steps, sample masks kept on the confounds) on its own, so that a subject with missing or
inconsistent files fails alone, and handed to :func:`daskglm.studies.subjects.fit_models`
as soon as it is queried (on a cluster, one task per subject builds and fits it
on a worker while the client queries the next; its BIDS derivatives are the
next task, submitted when its fit is committed); all go to one study store::

    <store>/zarr.json      root group; attributes: format "daskglm-subjects", "subjects"
                           (per subject: group, status, runs, scans, scans_kept,
                           voxels, wall_s, runs_written, runs_reused, error), "bids"
                           (dataset, task, space, confounds, contrasts)
    <store>/sub-01/        one fit store per subject (daskglm.open_subject(store, "01"))

Inputs and store may be local or fsspec URLs; runs are streamed by the
workers (:mod:`daskglm.io.remote`), relative local paths are made absolute on
the client.  With ``resume=True`` runs already complete in the store (same
inputs, parameters, design and mask) are reused, not recomputed.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import warnings
from pathlib import Path
from typing import Any

from daskglm.compat.nilearn import list_valid_subjects, split_confounds_kwargs
from daskglm.errors import SubjectsError
from daskglm.graph.resources import active_client, in_dask_worker
from daskglm.studies.bids.first_level import first_level_from_bids, query_subjects
from daskglm.studies.bids.layout import dataset_view, derivatives_candidates, no_subject_hint, subject_folders
from daskglm.studies.schedule import resolve_schedule
from daskglm.studies.subjects import SubjectsResult, _subject_id, fit_models, open_subject

__all__ = ["fit_bids", "BIDS_QUERY_PARAMS", "MASK_CHOICES"]

#: ``mask_img`` values naming a strategy (else None, a path or an image).
MASK_CHOICES = ("derivatives", "per-subject")
#: nilearn's ``derivatives_folder``; ``fit_bids`` looks one level down when it holds no subject.
DEFAULT_DERIVATIVES = "derivatives"

#: Arguments of :func:`first_level_from_bids` that ``fit_bids`` passes through.
BIDS_QUERY_PARAMS = (
    "t_r", "slice_time_ref", "hrf_model", "drift_model", "high_pass", "drift_order", "fir_delays",
    "min_onset", "target_affine", "target_shape", "smoothing_fwhm", "standardize", "signal_scaling",
    "noise_model", "minimize_memory",
)


def _subject_labels(view, derivatives_folder: str, sub_labels, exclude_subjects) -> list[str]:
    labels = list_valid_subjects(view.root / derivatives_folder, list(sub_labels or []))
    labels = sorted(set(labels) - set(exclude_subjects or []))
    if not labels:
        raise FileNotFoundError(f"No subject found in {view.url_of(view.root / derivatives_folder)}"
                                f"{no_subject_hint(view.root, derivatives_folder) or '.'}")
    return labels


def _derivatives_folder(view, derivatives_folder: str) -> str:
    """nilearn's default ``"derivatives"``, or the one pipeline folder in it that holds subjects.

    fMRIPrep's output usually sits in ``derivatives/fmriprep``: when
    ``derivatives`` itself holds no ``sub-*`` folder and exactly one folder in
    it does, that folder is used.  Otherwise the folder is kept as given (and
    a folder without subjects fails, naming the candidates).
    """
    if derivatives_folder != DEFAULT_DERIVATIVES or subject_folders(view.root / derivatives_folder):
        return derivatives_folder
    candidates = derivatives_candidates(view.root, derivatives_folder)
    return candidates[0] if len(candidates) == 1 else derivatives_folder


def _query(view, sid: str, task_label: str, query: dict, quiet: bool):
    """One subject's model, fit arguments, run names and brain masks (nilearn's warnings: first subject only).

    The run names are the runs' files (the ``hemi-L`` file of a GIfTI pair)
    as paths or URLs: they name the subject's runs in the store and its BIDS
    derivatives.  The masks are the brain masks intersected for its
    ``mask_img`` (``"derivatives"``), as paths or URLs, or None.
    """
    defaults = {name: p.default for name, p in inspect.signature(first_level_from_bids).parameters.items()
                if p.default is not inspect.Parameter.empty and name != "storage_options"}
    confounds = {k: v for k, v in query.items() if k.startswith("confounds_")}
    params = {**defaults, **{k: v for k, v in query.items() if k not in confounds},
              "task_label": task_label, "sub_labels": [sid]}
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        (subject,) = query_subjects(view, params, confounds)
    names = [view.url_of(path) for path in subject.run_files]
    masks = [view.url_of(path) for path in subject.mask_files] or None
    return (subject.model, subject.run_imgs, subject.events, subject.confounds), names, masks


def _nilearn_mask_sharing(model, mask_img, shared):
    """nilearn 0.14.1's ``mask_img="derivatives"``: the first subject's mask serves every subject.

    ``first_level_from_bids`` replaces its ``mask_img`` argument by the first
    subject's brain-mask intersection, so the later subjects of one call get
    that image; ``fit_bids`` queries subjects one by one and repeats it, so
    that its maps equal those of the models ``first_level_from_bids`` returns.
    ``mask_img="per-subject"`` gives each subject its own masks instead.
    """
    if mask_img != "derivatives":
        return shared
    if shared is not None:
        model.mask_img = shared
        return shared
    return model.mask_img if not isinstance(model.mask_img, str) and model.mask_img is not None else None


def _builder(model, imgs, events, confounds, extra_params: dict, shared_mask: bool = False):
    """The subject's fit, built where it runs (a worker, under schedule ``'subjects'``).

    ``shared_mask``: the model takes the study's shared mask (nilearn's
    ``mask_img="derivatives"``), given once to every builder as ``shared_mask=``
    rather than carried by each subject's model.
    """
    use_shared = shared_mask
    if use_shared:
        model.mask_img = None

    def build(shared_mask=None):
        if use_shared:
            model.mask_img = shared_mask
        for name, value in extra_params.items():
            setattr(model, name, value)
        return model.fit(imgs, events, confounds)  # with the sample masks the confounds carry
    return build


def _queried(view, labels, task_label: str, query: dict, run_names: dict, masks: dict):
    """``(id, (model, imgs, events, confounds) or exception)`` per subject, queried as the fit asks for it."""
    for i, sid in enumerate(labels):
        try:
            found, run_names[_subject_id(sid)], masks[_subject_id(sid)] = _query(view, sid, task_label, query,
                                                                                 quiet=i > 0)
        except Exception as err:
            yield _subject_id(sid), err
        else:
            yield _subject_id(sid), found


def _first_mask(queried, mask_img) -> tuple[list, Any]:
    """The subjects queried up to the one whose mask every subject shares (``mask_img="derivatives"``)."""
    first, shared = [], None
    if mask_img != "derivatives":
        return first, shared
    for sid, found in queried:
        first.append((sid, found))
        if not isinstance(found, BaseException):
            shared = _nilearn_mask_sharing(found[0], mask_img, None)
            if shared is not None:
                break
    return first, shared


def fit_bids(
    dataset,
    store,
    task_label: str,
    contrasts: dict | None = None,
    space_label: str | None = None,
    sub_labels: list[str] | None = None,
    confounds_strategy=None,
    storage_options: dict | None = None,
    resume: bool = True,
    derivatives_folder: str = "derivatives",
    exclude_subjects: list[str] | None = None,
    img_filters: list | None = None,
    mask_img=None,
    bids_out=None,
    overwrite: bool = False,
    progress: bool = True,
    raise_on_error: bool = False,
    confounds_kwargs: dict | None = None,
    schedule: str = "auto",
    convert_to_zarr: str | bool | None = None,
    **model_params: Any,
) -> SubjectsResult:
    """Fit every subject of a BIDS + fMRIPrep dataset into one study store.

    Parameters
    ----------
    dataset : str or path
        BIDS root, local (relative paths allowed) or fsspec URL (``s3://bucket/ds``).
    store : str or path
        Study store (directory or URL); subject ``01`` goes to ``<store>/sub-01``.
    task_label : str
    contrasts : dict, optional
        ``{name: definition}`` recorded in the store and written by ``bids_out``.
    space_label : str, optional
        Default nilearn's ``"MNI152NLin2009cAsym"``; ``"fsaverage5"`` (GIfTI) and ``"fsLR"``
        (CIFTI-2 ``.dtseries.nii``; ``bids_out`` maps as ``.dscalar.nii``) fit surface runs.
    sub_labels : list of str, optional
        Subjects to fit (default: every ``sub-*`` of the derivatives).
    confounds_strategy : tuple of str, optional
        ``load_confounds`` strategy (e.g. ``("motion", "wm_csf", "scrub")``); None:
        nilearn's default of ``first_level_from_bids`` (every column of the
        confounds table, first-row n/a set to 0).  Other ``load_confounds``
        arguments go in ``confounds_kwargs`` (e.g. ``{"scrub": 0, "fd_threshold": 0.5}``).
    storage_options : dict, optional
        fsspec options for the dataset and the store (both, when URLs).
    resume : bool, default=True
        Keep runs already complete in the store; compute the others.
    derivatives_folder : str, default="derivatives"
        As :func:`daskglm.first_level_from_bids`, but when the default
        ``"derivatives"`` holds no ``sub-*`` folder and exactly one folder in it
        does (fMRIPrep's usual ``derivatives/fmriprep``), that one is used (and
        recorded in the store's ``bids`` attributes); otherwise a folder
        without subjects fails, naming the folders that hold some.
    exclude_subjects, img_filters
        As :func:`daskglm.first_level_from_bids`.
    mask_img : None, 'derivatives', 'per-subject', path or image, default=None
        ``None`` (the default of nilearn's ``first_level_from_bids`` and of
        ``daskglm bids``): nilearn's EPI mask of each subject's runs (computed
        from the runs' mean, an extra pass over them while the graph is built);
        ``'derivatives'``: as nilearn 0.14.1's ``first_level_from_bids(mask_img="derivatives")``,
        which uses the intersection of the *first* subject's ``desc-brain_mask`` images for
        every subject (so the maps equal those of :func:`first_level_from_bids`'s models);
        ``'per-subject'``: each subject's own brain masks (nilearn's EPI mask if it has
        none).  The BIDS derivatives' ``statmap.json`` records the mask used
        (the brain-mask files, the path given, or ``"epi mask computed"``).
    bids_out : str or path, optional
        Write BIDS derivatives (:func:`daskglm.studies.bids.derivatives.save_bids_derivatives`)
        of every fitted subject there (a directory or a URL), for ``contrasts``.
    overwrite : bool, default=False
        Replace existing subject stores (when not resuming).
    progress : bool, default=True
    raise_on_error : bool, default=False
        Raise :class:`~daskglm.errors.SubjectsError` if any subject failed.
    schedule : {'auto', 'subjects', 'graph'}, default='auto'
        As :func:`daskglm.studies.subjects.fit_subjects`: under a distributed client
        with at least as many subjects as worker threads, each subject is one
        task that builds (events, confounds, designs, store metadata) and
        fits it on a worker; the client only queries the dataset, one subject
        after the other, while the workers fit the subjects already queried.
        With ``bids_out``, the derivatives are written by the workers too.
    convert_to_zarr : str or True, optional
        Fit from NIfTI-Zarr copies of the ``.nii`` / ``.nii.gz`` runs, written once to
        ``<dir>/sub-<id>/<run>.nii.zarr`` and reused while their inputs are unchanged
        (:mod:`daskglm.studies.convert`); ``True``: ``<store's parent>/derivatives/daskglm-zarr``.
    **model_params
        ``FirstLevelModel`` parameters (``smoothing_fwhm``, ``noise_model``,
        ``hrf_model``, ``whitening``, ``chunks``, ...).

    Returns
    -------
    SubjectsResult
        ``completed``, ``failed``, and ``status`` (runs, scans, scans kept,
        voxels, wall seconds, error per subject; also in the store's root);
        ``result.table()`` prints it.
    """
    from daskglm.first_level.model import FirstLevelModel  # noqa: F401  (the models come from first_level_from_bids)

    query = {k: model_params.pop(k) for k in BIDS_QUERY_PARAMS if k in model_params}
    if isinstance(mask_img, str) and mask_img not in MASK_CHOICES and "." not in mask_img:
        raise ValueError(f"mask_img must be one of {list(MASK_CHOICES)}, None, a path or an image; "
                         f"got {mask_img!r}.")
    query.update(space_label=space_label, img_filters=img_filters, derivatives_folder=derivatives_folder,
                 mask_img="derivatives" if mask_img == "per-subject" else mask_img)
    confounds = {}
    if confounds_strategy is not None:
        confounds = {"confounds_strategy": tuple(confounds_strategy)}
        confounds.update({f"confounds_{k}": v for k, v in (confounds_kwargs or {}).items()})
    query.update(confounds)
    split_confounds_kwargs(dict(confounds))  # validate early
    run_names, masks = {}, {}
    with dataset_view(dataset, task_label, storage_options) as view:
        derivatives_folder = _derivatives_folder(view, derivatives_folder)
        query["derivatives_folder"] = derivatives_folder
        labels = _subject_labels(view, derivatives_folder, sub_labels, exclude_subjects)
        schedule = resolve_schedule(schedule, len(labels), active_client())
        queried = _queried(view, labels, task_label, query, run_names, masks)
        if convert_to_zarr:  # fit from NIfTI-Zarr copies of the runs, converted once (daskglm.studies.convert)
            from daskglm.studies.convert import default_zarr_dir, zarr_copies

            queried = zarr_copies(queried, default_zarr_dir(store) if convert_to_zarr is True else convert_to_zarr)
        first, shared_mask = _first_mask(queried, mask_img)
        if shared_mask is not None:  # every subject's statmap.json names the masks that made the shared one
            masks = _SharedMasks(masks, first[-1][0])
        shared = {"shared_mask": shared_mask} if shared_mask is not None else {}
        sharing = bool(shared)  # from the subject that defines the shared mask onwards
        builders = ((sid, found if isinstance(found, BaseException)
                     else _builder(*found, model_params, shared_mask=sharing and (i >= len(first) - 1)))
                    for i, (sid, found) in enumerate(itertools.chain(first, queried)))
        # the dict is filled while the builders are consumed: the root attributes are written last
        attributes = {"bids": {"dataset": view.url_of(view.root) if not view.remote else view.url,
                               "task": task_label, "space": space_label, "confounds": confounds or None,
                               "contrasts": {k: str(v) for k, v in (contrasts or {}).items()},
                               "runs": run_names, "derivatives": derivatives_folder,
                               "mask": mask_img if mask_img is None or isinstance(mask_img, str)
                               else "image given in memory"}}
        derivatives = _Derivatives(bids_out, contrasts, run_names, attributes["bids"]["dataset"], store,
                                   storage_options, masks)
        result = fit_models(builders, store, overwrite=overwrite and not resume, resume=resume,
                            storage_options=storage_options, progress=progress, attributes=attributes,
                            shared=shared, schedule=schedule, on_complete=derivatives.submit)
    if bids_out is not None and contrasts:
        write_bids_out(result, bids_out, contrasts, run_names, attributes["bids"]["dataset"], storage_options,
                       submitted=derivatives.futures, masks=masks)
    if raise_on_error and result.failed:
        raise SubjectsError("; ".join(f"sub-{s}: {m}" for s, m in result.failed.items()))
    return result


def _out_dir(out_dir) -> str:
    from daskglm.io.remote import is_url

    return str(out_dir).rstrip("/") if is_url(str(out_dir)) else str(Path(out_dir).absolute())


class _SharedMasks:
    """Every subject's masks are those of the subject whose brain masks make the shared mask (``.get`` as a dict)."""

    def __init__(self, masks: dict, defining: str):
        self.masks, self.defining = masks, defining

    def get(self, sid, default=None):
        return self.masks.get(self.defining, default)


class _Derivatives:
    """Submits a subject's derivatives task as soon as its fit is committed (under a distributed client)."""

    def __init__(self, out_dir, contrasts, run_names: dict, dataset: str, store, storage_options, masks: dict):
        from daskglm.store.location import Location

        self.client = active_client() if out_dir is not None and contrasts else None
        self.futures: dict = {}
        self.masks = masks
        if self.client is not None:
            self.args = (Location(store, storage_options).url, _out_dir(out_dir), contrasts, dataset,
                         storage_options)
            self.run_names = run_names

    def submit(self, sid: str):
        """The subject's derivatives task (None without a client or without ``bids_out``)."""
        if self.client is None:
            return None
        self.futures[sid] = self.client.submit(_subject_derivatives, sid, self.run_names[sid], *self.args,
                                               self.masks.get(sid), pure=False)
        return self.futures[sid]


def write_bids_out(result: SubjectsResult, out_dir, contrasts: dict, run_names: dict[str, list[str]],
                   dataset: str, storage_options: dict | None = None,
                   submitted: dict | None = None, masks: dict | None = None) -> dict[str, dict]:
    """BIDS derivatives of every completed subject of a study store (maps computed from the store).

    Under a ``dask.distributed`` client each subject's derivatives are one
    task (maps computed and files written on a worker, which must reach
    ``out_dir`` as it reaches the store; ``submitted``: ``{subject: future}``
    of the tasks already submitted); ``dataset_description.json`` is written
    once, here.  ``masks``: per subject, the brain-mask files its mask was
    made of, recorded in ``statmap.json`` (None: what the fit's parameters say).
    """
    from daskglm.io.remote import is_url

    out = _out_dir(out_dir)
    sids = list(result.completed)
    if not sids:
        return {}
    _write_description(out, dataset, is_url(out), storage_options)
    args = (result.store, out, contrasts, dataset, storage_options)
    masks = masks if masks is not None else {}
    client = active_client()
    if client is None:
        return {sid: _subject_derivatives(sid, run_names[sid], *args, masks.get(sid)) for sid in sids}
    futures = dict(submitted or {})
    for sid in sids:
        if sid not in futures:
            futures[sid] = client.submit(_subject_derivatives, sid, run_names[sid], *args, masks.get(sid),
                                         pure=False)
    return dict(zip(sids, client.gather([futures[s] for s in sids])))


def _write_description(out: str, dataset: str, remote: bool, storage_options: dict | None) -> None:
    """``dataset_description.json`` of the derivatives (merged with an existing one, as nilearn's)."""
    import tempfile

    from daskglm.studies.bids.derivatives import _dataset_description

    if not remote:
        Path(out).mkdir(parents=True, exist_ok=True)
        _dataset_description(Path(out), [dataset])
        return
    import fsspec

    fs, path = fsspec.core.url_to_fs(out, **(storage_options or {}))
    with tempfile.TemporaryDirectory(prefix="daskglm-bids-out-") as tmp:
        name = f"{path}/dataset_description.json"
        if fs.exists(name):
            fs.get(name, f"{tmp}/dataset_description.json")
        _dataset_description(Path(tmp), [dataset])
        fs.put(f"{tmp}/dataset_description.json", name)


def _subject_derivatives(sid: str, names: list[str], store: str, out: str, contrasts: dict, dataset: str,
                         storage_options: dict | None, mask: list[str] | None = None) -> dict:
    """One subject's derivatives: written to a private folder, then copied (or uploaded) into ``out``.

    Subjects written at once never touch the same file (the description is
    :func:`_write_description`'s).  Runs in a task or on the client.
    """
    import shutil
    import tempfile

    from daskglm.io.remote import is_url
    from daskglm.studies.bids.derivatives import save_bids_derivatives
    from daskglm.studies.schedule import synchronous_tasks

    tmp = tempfile.mkdtemp(prefix="daskglm-bids-out-")
    try:
        with synchronous_tasks if in_dask_worker() else contextlib.nullcontext():
            model = open_subject(store, sid, storage_options=storage_options)
            written = save_bids_derivatives(model, tmp, contrasts, names, source_dataset=dataset, mask=mask)
        folder = Path(written["dir"]).name
        if is_url(out):
            import fsspec

            fs, path = fsspec.core.url_to_fs(out, **(storage_options or {}))
            fs.put(f"{tmp}/{folder}/", f"{path}/{folder}/", recursive=True)
            written["dir"] = f"{out}/{folder}"
        else:
            shutil.copytree(Path(tmp) / folder, Path(out) / folder, dirs_exist_ok=True)
            written["dir"] = str(Path(out) / folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written
