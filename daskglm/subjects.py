"""Many subjects in one dask graph: :func:`fit_subjects` and :func:`open_subject`.

Every subject's fit is built lazily (:meth:`FirstLevelModel.fit`), turned into
a delayed, atomic store write (``to_zarr(compute=False)``), and all of them are
computed together by one ``dask.compute`` (or, under a
``dask.distributed.Client``, submitted to the cluster one by one as soon as
each is built, so the workers start while the client plans the next
subjects), so the scheduler keeps every worker busy across subjects.  Each subject goes to its own fit store,
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

import contextlib
import functools
import inspect
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask

from .errors import SubjectsError
from .graph.resources import active_client
from .model import FirstLevelModel, open_model
from .store.location import Location
from .store.schema import FORMAT_ATTR, FORMAT_VERSION_ATTR
from .store.zarr import WriteSummary

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

    def table(self) -> str:
        """The per-subject status table (runs, scans kept, voxels, wall, error) as text."""
        return status_table(self.status)

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


def failure_message(err: BaseException) -> str:
    """The one-line message recorded for a failed subject: ``"<type>: <message>"``."""
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"


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


def _subject_store(root: Location, sid: str) -> str:
    return root.child(f"sub-{sid}")


def _fit_spec(spec: dict, params: dict) -> FirstLevelModel:
    """One subject's lazily fitted model from its fit arguments."""
    params = dict(params)
    if "mask_img" in spec:
        params["mask_img"] = spec["mask_img"]
    model = FirstLevelModel(**params)
    return model.fit(**{k: spec[k] for k in _FIT_KEYS if k in spec})


def _finished(summary):
    """Graph task run after a subject's store is committed: stamps the time."""
    return summary, time.time()


def _subject_info(model: FirstLevelModel) -> dict:
    """Runs, scans, scans kept and voxels of a lazily fitted model (computes nothing)."""
    state = model._state
    kept = [int(d.shape[0]) for d in state.designs]
    scans = []
    for source in state.sources or ():
        while getattr(source, "source", None) is not None:  # censored / resampled views
            source = source.source
        scans.append(int(source.n_scans))
    return {"runs": len(state.designs), "scans": sum(scans) or sum(kept), "scans_kept": sum(kept),
            "voxels": int(state.n_voxels)}


def _plan(sid: str, build, root: Location, overwrite: bool, resume: bool):
    """Build one subject's lazy fit; return its delayed, time-stamped store write and its info."""
    model = build()
    write = model.to_zarr(_subject_store(root, sid), overwrite=overwrite, resume=resume,
                          compute=False, storage_options=root.storage_options or None)
    info = _subject_info(model)
    return dask.delayed(_finished, pure=False)(write), info


def _gather_distributed(futures: dict, progress: bool) -> dict[str, Any]:
    """Wait for every subject's future (submitted as soon as its graph was built)."""
    from distributed import wait

    if progress:
        from distributed import progress as show_progress

        show_progress(list(futures.values()))
    wait(list(futures.values()))
    return {sid: fut.exception() if fut.status == "error" else fut.result() for sid, fut in futures.items()}


def _compute_local(planned: dict, progress: bool) -> dict[str, Any] | None:
    """All subjects in one compute; None if anything failed (the caller isolates)."""
    bar = contextlib.nullcontext()
    if progress:
        from dask.diagnostics import ProgressBar

        bar = ProgressBar()
    sids = list(planned)
    try:
        with bar:
            results = dask.compute(*[planned[s] for s in sids])
    except Exception:
        return None
    return dict(zip(sids, results))


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

    Returns
    -------
    SubjectsResult
        Subjects fitted (with the runs written/reused) and subjects failed
        (with a one-line error).
    """
    specs = _normalise(subjects)
    params = _template_params(model, model_params)
    builders = {sid: functools.partial(_fit_spec, spec, params) for sid, spec in specs.items()}
    result = fit_models(builders, store, overwrite=overwrite, resume=resume,
                        storage_options=storage_options, progress=progress)
    if raise_on_error:
        result.raise_for_errors()
    return result


def fit_models(builders: Mapping[str, Any], store, overwrite: bool = False, resume: bool = False,
               storage_options: dict | None = None, progress: bool = True,
               failed: Mapping[str, str] | None = None, attributes: Mapping | None = None) -> SubjectsResult:
    """Fit and store many subjects in one graph, from a builder per subject.

    The engine of :func:`fit_subjects` and :func:`daskglm.fit_bids`.

    Parameters
    ----------
    builders : mapping
        ``subject id -> callable`` returning that subject's lazily fitted
        :class:`FirstLevelModel` (called while the graph is built; an exception
        fails that subject only).
    store, overwrite, resume, storage_options, progress
        As :func:`fit_subjects`.
    failed : mapping, optional
        Subjects that already failed before (``id -> message``), recorded as such.
    attributes : mapping, optional
        Extra attributes of the root group (e.g. the BIDS query).

    Returns
    -------
    SubjectsResult
    """
    root = Location(store, storage_options)
    root.makedirs()
    result = SubjectsResult(store=root.url, failed=dict(failed or {}))
    planned, futures, start = {}, {}, time.time()
    client = active_client()
    for sid, build in builders.items():
        try:
            planned[sid], result.status[sid] = _plan(sid, build, root, overwrite, resume)
        except Exception as err:  # building the graph: inputs, designs, existing store
            result.failed[sid] = failure_message(err)
        else:
            if client is not None:  # the cluster starts on it while the next subject is planned
                futures[sid] = client.compute(planned[sid])
    if planned:
        if client is not None:
            outcomes = _gather_distributed(futures, progress)
        else:
            outcomes = _compute_local(planned, progress)
            if outcomes is None:  # isolate the failure: one subject at a time, resuming
                outcomes = {}
                for sid in planned:
                    try:
                        delayed_write, _ = _plan(sid, builders[sid], root, False, True)
                        outcomes[sid] = delayed_write.compute()
                    except Exception as err:
                        outcomes[sid] = err
        for sid, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                result.failed[sid] = failure_message(outcome)
            else:
                result.completed[sid], finished = outcome
                result.status[sid]["wall_s"] = round(max(0.0, finished - start), 3)
    for sid in result.failed:
        result.status.setdefault(sid, {})["error"] = result.failed[sid]
    for sid, entry in result.status.items():
        entry["status"] = "complete" if sid in result.completed else "failed"
    _write_index(root, list(builders) + [s for s in result.failed if s not in builders], result,
                 attributes)
    return result


_COLUMNS = ("subject", "status", "runs", "scans", "scans_kept", "voxels", "wall_s", "error")


def status_table(status: Mapping[str, Mapping]) -> str:
    """The per-subject status (``SubjectsResult.status`` or a store's index) as a text table."""
    rows = [[f"sub-{sid}", *[str(entry.get(c, "")) for c in _COLUMNS[1:]]] for sid, entry in status.items()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths)).rstrip()]
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
    return open_model(_subject_store(root, _subject_id(subject)), storage_options=storage_options)


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
