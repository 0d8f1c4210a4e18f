"""Many subjects in one dask graph: :func:`fit_subjects` and :func:`open_subject`.

Every subject's fit is built lazily (:meth:`FirstLevelModel.fit`), turned into
a delayed, atomic store write (``to_zarr(compute=False)``), and computed.  Two
schedules (``schedule=``):

- ``"subjects"`` (under a ``dask.distributed.Client`` with at least as many
  subjects as worker threads, the default there): one task per subject, which
  builds that subject's fit *on the worker* (headers, events, confounds,
  designs, mask, the store's metadata) and computes it there with the
  synchronous scheduler.  The client only submits the tasks and collects
  one small summary per subject as each finishes: nothing per subject is
  serial on the client, the scheduler handles one task per subject instead of
  ~100, and no statistics travel between workers.  As many subjects run as
  the cluster has threads; the next one is submitted when one ends (so it
  goes to the thread that just freed), built beforehand by a client thread.
- ``"graph"`` (few subjects, or no distributed client): the client builds
  every subject's graph, submitting each to the cluster as soon as it is
  built, or computes them all in one ``dask.compute`` with the local
  schedulers; a subject's runs and voxel blocks then spread over all cores.

Each subject goes to its own fit store,
``<store>/sub-<id>``, readable with :func:`daskglm.open_model` or
:func:`open_subject`; the root group's attributes record each subject's status.

A subject that fails (a missing file while the graph is built, a corrupt run
while it is computed) is reported in the returned :class:`SubjectsResult` and
does not lose the others: under distributed every subject is its own future;
with the local schedulers, a failed batch falls back to fitting the remaining
subjects one by one, resuming what the batch already wrote.

:func:`load_spec` reads the spec file of the ``daskglm fit-subjects`` command
(:mod:`daskglm.cli`); :func:`daskglm.fit_bids` (``daskglm bids``) builds the
same store from a BIDS query through :func:`fit_models`.

The study store's layout (stable; other tools read it)::

    <store>/zarr.json   root group, attributes:
                          daskglm_format = "daskglm-subjects", daskglm_format_version = 1,
                          subjects = {id: {"group": "sub-<id>", "status": "complete" | "failed",
                                           "runs", "scans", "scans_kept", "voxels", "wall_s",
                                           "runs_written", "runs_reused", "error" (if failed)}},
                          and, from fit_bids, bids = {dataset, task, space, confounds,
                                                      contrasts, runs: {id: [inputs]}}
    <store>/sub-<id>/   one complete fit store (open_subject / open_model)

Entries are merged across calls: a subject that fails later keeps its group
(and earlier fit) and is marked failed.  :func:`read_status` returns the
``subjects`` mapping, :func:`status_table` prints it.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daskglm.errors import SubjectsError
from daskglm.first_level.model import FirstLevelModel, open_model
from daskglm.graph.resources import active_client
from daskglm.store.location import Location
from daskglm.store.schema import FORMAT_ATTR, FORMAT_VERSION_ATTR
from daskglm.store.zarr import WriteSummary
from daskglm.studies.schedule import (
    failure_message,  # noqa: F401  (re-exported: daskglm.studies.bids.study)
    fit_graph,
    resolve_schedule,
    run_subjects,
    subject_store,
)

__all__ = ["fit_subjects", "fit_models", "open_subject", "load_spec", "read_status", "status_table",
           "SubjectsResult", "SubjectsError"]

SUBJECTS_FORMAT = "daskglm-subjects"
_FIT_KEYS = ("run_imgs", "events", "confounds", "design_matrices", "sample_masks")
_PATH_KEYS = ("run_imgs", "events", "confounds", "design_matrices", "mask_img")


@dataclass
class SubjectsResult:
    """Outcome of :func:`fit_subjects`.

    Attributes
    ----------
    store : str
        The root store.
    completed : dict
        ``subject id -> WriteSummary`` (runs written and runs reused).
    failed : dict
        ``subject id -> one-line error message``.
    """

    store: str
    completed: dict[str, WriteSummary] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    #: ``subject id -> {"runs", "scans", "scans_kept", "voxels", "wall_s", "status", "error"}``
    status: dict[str, dict] = field(default_factory=dict)

    def table(self, errors: bool = True) -> str:
        """The per-subject status table (runs, scans kept, voxels, wall, error) as text.

        ``errors=False`` leaves the error column out (the command line prints
        each error once, on stderr).
        """
        return status_table(self.status, errors=errors)

    @property
    def ok(self) -> bool:
        """True when every subject was fitted."""
        return not self.failed

    def raise_for_errors(self) -> None:
        """Raise :class:`SubjectsError` listing the failed subjects, if any."""
        if self.failed:
            lines = "; ".join(f"sub-{s}: {m}" for s, m in self.failed.items())
            raise SubjectsError(f"{len(self.failed)} subject(s) failed: {lines}")

    def __str__(self) -> str:
        text = [f"{len(self.completed)} subject(s) fitted into {self.store}"]
        for sid, summary in self.completed.items():
            text.append(f"  sub-{sid}: {len(summary.written)} run(s) written, "
                        f"{len(summary.reused)} reused")
        for sid, message in self.failed.items():
            text.append(f"  sub-{sid}: FAILED: {message}")
        return "\n".join(text)


def _subject_id(sid) -> str:
    sid = str(sid)
    if sid.startswith("sub-"):
        sid = sid[4:]
    if not sid or any(c in sid for c in "/\\:") or sid.startswith("."):
        raise ValueError(f"Invalid subject id {sid!r}: use letters, digits, '-' or '_'.")
    return sid


def _normalise(subjects) -> dict[str, dict]:
    if isinstance(subjects, Mapping):
        items = list(subjects.items())
    else:
        items = []
        for entry in subjects:
            entry = dict(entry)
            sid = entry.pop("subject", entry.pop("id", None))
            if sid is None:
                raise ValueError("Each subject in a list needs a 'subject' (or 'id') key.")
            items.append((sid, entry))
    out: dict[str, dict] = {}
    for sid, spec in items:
        sid = _subject_id(sid)
        if sid in out:
            raise ValueError(f"Subject {sid!r} is given twice.")
        if not isinstance(spec, Mapping):
            raise TypeError(f"Subject {sid!r}: expected a dict of fit arguments, got {type(spec).__name__}.")
        unknown = set(spec) - set(_FIT_KEYS) - {"mask_img"}
        if unknown:
            raise ValueError(f"Subject {sid!r}: unknown keys {sorted(unknown)}; "
                             f"use {sorted((*_FIT_KEYS, 'mask_img'))}.")
        if "run_imgs" not in spec:
            raise ValueError(f"Subject {sid!r}: 'run_imgs' is required.")
        out[sid] = dict(spec)
    if not out:
        raise ValueError("No subjects given.")
    return out


def _template_params(model: FirstLevelModel | None, model_params: Mapping | None) -> dict[str, Any]:
    names = [n for n in inspect.signature(FirstLevelModel.__init__).parameters if n != "self"]
    params = {n: getattr(model, n) for n in names} if model is not None else {}
    params.update(model_params or {})
    unknown = set(params) - set(names)
    if unknown:
        raise TypeError(f"Unknown FirstLevelModel parameters: {sorted(unknown)}.")
    return params


def _fit_spec(spec: dict, params: dict) -> FirstLevelModel:
    """One subject's lazily fitted model from its fit arguments (``params``: the shared model parameters)."""
    params = dict(params)
    if "mask_img" in spec:
        params["mask_img"] = spec["mask_img"]
    model = FirstLevelModel(**params)
    return model.fit(**{k: spec[k] for k in _FIT_KEYS if k in spec})


def fit_subjects(
    subjects,
    store,
    model: FirstLevelModel | None = None,
    model_params: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    storage_options: dict | None = None,
    progress: bool = True,
    raise_on_error: bool = False,
    schedule: str = "auto",
) -> SubjectsResult:
    """Fit many subjects in one dask graph, one store group per subject.

    Parameters
    ----------
    subjects : mapping or list
        ``{subject_id: {"run_imgs": ..., "design_matrices": ...}}`` or
        ``{subject_id: {"run_imgs": ..., "events": ..., "confounds": ...}}``,
        the arguments of :meth:`FirstLevelModel.fit` (plus an optional
        per-subject ``mask_img``); or a list of such dicts each with a
        ``"subject"`` key.  A ``sub-`` prefix on ids is dropped.
    store : str or path
        Root store (local directory or fsspec URL); subject ``01`` goes to
        ``<store>/sub-01``.
    model : FirstLevelModel, optional
        Template whose parameters every subject uses (it is not modified).
    model_params : mapping, optional
        ``FirstLevelModel`` parameters, overriding the template's.
    overwrite, resume : bool, default=False
        As in :meth:`FirstLevelModel.to_zarr`, per subject.  With
        ``resume=True`` complete runs (same inputs and parameters) are kept.
    storage_options : dict, optional
        fsspec options for URLs.
    progress : bool, default=True
        Show a progress bar (``dask.diagnostics.ProgressBar`` locally,
        ``distributed.progress`` on a cluster).
    raise_on_error : bool, default=False
        Raise :class:`SubjectsError` after fitting if any subject failed.
    schedule : {'auto', 'subjects', 'graph'}, default='auto'
        Under a ``dask.distributed.Client``: one task per subject, built and
        computed on a worker (``'subjects'``), or every subject's graph built
        on the client (``'graph'``); ``'auto'`` picks ``'subjects'`` when
        there are at least as many subjects as worker threads (module docstring).

    Returns
    -------
    SubjectsResult
        Subjects fitted (with the runs written/reused) and subjects failed
        (with a one-line error).
    """
    specs = _normalise(subjects)
    params = _template_params(model, model_params)
    builders = {sid: functools.partial(_fit_spec, spec) for sid, spec in specs.items()}
    result = fit_models(builders, store, overwrite=overwrite, resume=resume,
                        storage_options=storage_options, progress=progress, shared={"params": params},
                        schedule=schedule)
    if raise_on_error:
        result.raise_for_errors()
    return result


def fit_models(builders, store, overwrite: bool = False, resume: bool = False,
               storage_options: dict | None = None, progress: bool = True,
               failed: Mapping[str, str] | None = None, attributes: Mapping | None = None,
               shared: Mapping[str, Any] | None = None, schedule: str = "auto",
               on_complete=None) -> SubjectsResult:
    """Fit and store many subjects, from a builder per subject.

    The engine of :func:`fit_subjects` and :func:`daskglm.fit_bids`.

    Parameters
    ----------
    builders : mapping, or iterable of (id, builder) pairs
        ``subject id -> callable`` returning that subject's lazily fitted
        :class:`FirstLevelModel` (an exception fails that subject only).  It
        is called with the ``shared`` values as keyword arguments, on the
        client (schedule ``'graph'``) or on a worker (``'subjects'``: it must
        then pickle, and the inputs it names must be reachable from the
        workers, as the runs are).  An iterable is consumed lazily, each
        subject submitted as it comes; a builder that is an exception
        instance records that subject as failed.
    store, overwrite, resume, storage_options, progress, schedule
        As :func:`fit_subjects`.
    failed : mapping, optional
        Subjects that already failed before (``id -> message``), recorded as such.
    attributes : mapping, optional
        Extra attributes of the root group (e.g. the BIDS query).
    shared : mapping, optional
        Keyword arguments of every builder (e.g. one mask image for every
        subject, instead of a copy in each builder); under schedule
        ``'subjects'`` they travel with each task, of which only as many as
        the cluster has threads are submitted at once.
    on_complete : callable, optional
        ``on_complete(subject_id)``, called on the client for each subject
        whose store is committed: as soon as it is under schedule
        ``'subjects'`` (the other subjects still fitting; a future it returns,
        e.g. the subject's derivatives, runs before the next subject takes
        that thread), else at the end.

    Returns
    -------
    SubjectsResult
    """
    root = Location(store, storage_options)
    root.makedirs()
    result = SubjectsResult(store=root.url, failed=dict(failed or {}))
    shared = dict(shared or {})
    client = active_client()
    mode = resolve_schedule(schedule, len(builders) if isinstance(builders, Mapping) else None, client)
    start = time.time()
    if mode == "subjects":
        order, outcomes = run_subjects(client, builders, root, overwrite, resume, shared, progress, result,
                                       on_complete)
        for sid, (status, value, finished, info) in outcomes.items():
            result.status[sid] = dict(info)
            if status == "complete":
                result.completed[sid] = value
                result.status[sid]["wall_s"] = round(max(0.0, finished - start), 3)
            else:
                result.failed[sid] = value
    else:
        order = fit_graph(client, builders, root, overwrite, resume, shared, progress, result, start)
        for sid in result.completed if on_complete is not None else ():
            on_complete(sid)
    for sid in result.failed:
        result.status.setdefault(sid, {})["error"] = result.failed[sid]
    for sid, entry in result.status.items():
        entry["status"] = "complete" if sid in result.completed else "failed"
    _write_index(root, order + [s for s in result.failed if s not in order], result, attributes)
    return result


_COLUMNS = ("subject", "status", "runs", "scans", "scans_kept", "voxels", "wall_s", "error")


def status_table(status: Mapping[str, Mapping], errors: bool = True) -> str:
    """The per-subject status (``SubjectsResult.status`` or a store's index) as a text table.

    ``errors=False``: without the error column.
    """
    columns = _COLUMNS if errors else _COLUMNS[:-1]
    rows = [[f"sub-{sid}", *[str(entry.get(c, "")) for c in columns[1:]]] for sid, entry in status.items()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def read_status(store, storage_options: dict | None = None) -> dict[str, dict]:
    """The per-subject status recorded in a study store's root (``{}`` if none)."""
    root = Location(store, storage_options)
    doc = root.read_json("zarr.json") or {}
    return dict(doc.get("attributes", {}).get("subjects", {}))


def _write_index(root: Location, sids, result: SubjectsResult, extra: Mapping | None = None) -> None:
    """The root's attributes: format, ``subjects`` (one entry per subject, merged with earlier runs)."""
    previous = root.read_json("zarr.json") or {}
    attrs = dict(previous.get("attributes", {}))
    subjects = dict(attrs.get("subjects", {}))
    for sid in sids:
        info = {k: v for k, v in result.status.get(sid, {}).items() if k != "error"}
        if sid in result.completed:
            summary = result.completed[sid]
            subjects[sid] = {"group": f"sub-{sid}", **info, "status": "complete",
                             "runs_written": summary.written, "runs_reused": summary.reused}
        else:
            entry = dict(subjects.get(sid, {"group": f"sub-{sid}"}))
            entry.update(info)
            entry.update(status="failed", error=result.failed.get(sid, "unknown error"))
            subjects[sid] = entry
    attrs.update(extra or {})
    attrs.update({FORMAT_ATTR: SUBJECTS_FORMAT, FORMAT_VERSION_ATTR: 1, "subjects": subjects})
    root.write_json("zarr.json", {"zarr_format": 3, "node_type": "group", "attributes": attrs})


def open_subject(store, subject, storage_options: dict | None = None) -> FirstLevelModel:
    """Open one subject's fit from a :func:`fit_subjects` store.

    Parameters
    ----------
    store : str or path
        The root store given to :func:`fit_subjects`.
    subject : str
        Subject id (with or without ``sub-``).
    storage_options : dict, optional

    Returns
    -------
    FirstLevelModel
        As :func:`daskglm.open_model`.
    """
    root = Location(store, storage_options)
    return open_model(subject_store(root, _subject_id(subject)), storage_options=storage_options)


# ------------------------------------------------------------------ spec file
def _resolve_paths(value, base: Path):
    if isinstance(value, list):
        return [_resolve_paths(v, base) for v in value]
    if isinstance(value, str) and "://" not in value and not os.path.isabs(value):
        candidate = base / value
        return str(candidate)
    return value


def load_spec(path) -> dict:
    """Read a ``fit-subjects`` spec file (JSON, or YAML if PyYAML is installed).

    The spec is ``{"model": {FirstLevelModel parameters}, "subjects": {id: {fit
    arguments}}, "storage_options": {...}}``; ``model`` and
    ``storage_options`` are optional.  Relative paths are relative to the
    spec file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Spec file {str(path)!r} does not exist.")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        spec = yaml.safe_load(text)
    else:
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"Spec file {str(path)!r} is not valid JSON: {err}") from err
    if not isinstance(spec, dict) or "subjects" not in spec:
        raise ValueError(f"Spec file {str(path)!r} must be an object with a 'subjects' entry.")
    unknown = set(spec) - {"model", "subjects", "storage_options"}
    if unknown:
        raise ValueError(f"Spec file {str(path)!r}: unknown entries {sorted(unknown)}.")
    base = path.parent
    subjects = spec["subjects"]
    items = subjects.items() if isinstance(subjects, dict) else None
    if items is None:
        raise ValueError(f"Spec file {str(path)!r}: 'subjects' must map subject ids to fit arguments.")
    spec["subjects"] = {
        sid: {k: (_resolve_paths(v, base) if k in _PATH_KEYS else v) for k, v in dict(s).items()}
        for sid, s in items
    }
    model = dict(spec.get("model") or {})
    if isinstance(model.get("mask_img"), str):
        model["mask_img"] = _resolve_paths(model["mask_img"], base)
    spec["model"] = model
    return spec
