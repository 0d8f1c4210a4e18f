"""The results store: one Zarr group per fit, one subgroup per run, committed last.

The fit's Dataset (variables and attributes: :mod:`daskglm.store.schema`) is
split on disk (format version 3) so that runs can be written, and resumed, one
at a time, each with its own number of scans and regressors::

    fit.zarr/
      zarr.json              root group; its attributes are the commit record:
                             daskglm_format, daskglm_format_version, daskglm_runs
                             (ordered run group names), daskglm_run_keys,
                             daskglm_shared, plus the dataset's own attributes
                             (affine, design_columns, model_params, daskglm_version)
      run0-1a2b3c4d/         one group per run: every variable with a ``run`` dim,
                             that run's slice, padding trimmed; attributes
                             daskglm_run_key (input identity + parameters + design
                             hash, :mod:`daskglm.store.keys`), daskglm_run_index,
                             daskglm_run_source and daskglm_run_complete
      run1-5e6f7a8b/
      shared-9c0d1e2f/       variables without a ``run`` dim (the mask, ...);
                             attributes daskglm_group and daskglm_run_complete

Atomicity.  A group counts only once its ``daskglm_run_complete`` attribute is
set, which is done after all of its arrays are written.  Locally a group is
written to a hidden temporary directory, marked, then renamed into place.  On
object stores (no rename) it is written in place and the marker is the last
object written.  The root ``zarr.json`` is written last of all (one atomic
``os.replace`` locally, one PUT on object stores), so a reader sees either the
previous complete fit or the new complete fit, never a half-written one.  Group
names are unique per write, so a commit never modifies a group that the
previous commit references.

Integrity.  Every array is written with the ``zstd`` and ``crc32c`` codecs and
``write_empty_chunks=True`` (:mod:`daskglm.store.integrity`); reading
(:mod:`daskglm.store.read`) validates the schema and verifies every chunk.

Concurrent writers (:mod:`daskglm.store.lock`, ``docs/stores.md``).  Each write
records a claim first; the commit (root record, then garbage collection of
daskglm groups that the new root does not reference and no live writer
claims) runs under an exclusive ``flock`` on local disks.  Object stores have
no lock: their commits are last-writer-wins.

Resume.  ``write_dataset(..., resume=True)`` reuses every complete run group
of the store whose ``daskglm_run_key`` equals the key of a run being written,
referenced or not, and computes only the others.  Each run group is complete
as soon as its run is fitted and written, so a write that fails or is
interrupted (Ctrl-C, a later run's unreadable file, a killed process) leaves
its finished runs behind for a resumed write: a failure removes only the
groups it left incomplete (and its shared group); the next commit that does
not reuse the finished ones collects them.

Attributes are JSON; no pickles.  Format versions 1 (one flat group, daskglm
0.1) and 2 (no checksums) are still read; ``daskglm migrate`` rewrites them
(:mod:`daskglm.store.migrate`).
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from daskglm.errors import StoreError
from daskglm.graph.resources import compute as compute_graph
from daskglm.store.integrity import checksummed_encoding
from daskglm.store.location import Location
from daskglm.store.lock import collect_garbage, commit_lock, remove_claim, write_claim
from daskglm.store.read import read_dataset, read_fit
from daskglm.store.schema import (
    FORMAT_ATTR,
    FORMAT_NAME,
    FORMAT_VERSION,
    FORMAT_VERSION_ATTR,
    GROUP_ATTR,
    RUN_INDEX_ATTR,
    RUN_KEY,
    RUN_KEYS_ATTR,
    RUN_MARKER,
    RUN_SOURCE,
    RUNS_ATTR,
    SHARED_ATTR,
    TRIMMED_DIMS,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "RUN_MARKER",
    "StoreError",
    "WriteSummary",
    "write_dataset",
    "read_dataset",
    "read_fit",
    "complete_run_keys",
]


@dataclass
class WriteSummary:
    """What :func:`write_dataset` did.

    Attributes
    ----------
    store : str
        The store written (local path or URL).
    written : list of int
        Runs computed and written.
    reused : list of int
        Runs found complete in the store (same key) and not recomputed.
    """

    store: str
    written: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)


def _group_attrs(loc: Location, name: str) -> dict | None:
    """The attributes of group ``name``, or None if it is not a group."""
    meta = loc.read_json(f"{name}/zarr.json")
    if meta is None or meta.get("node_type") != "group":
        return None
    return meta.get("attributes", {})


def complete_run_keys(path, storage_options: dict | None = None) -> dict[str, str]:
    """Complete run groups of a store, as ``{run key: group name}``.

    Committed or not: an interrupted write leaves complete run groups that a
    resumed write reuses.

    Parameters
    ----------
    path : str or path
        Local directory or fsspec URL.
    storage_options : dict, optional
        Passed to fsspec.

    Returns
    -------
    dict
        The first complete group (in name order) of each key.
    """
    loc = Location(path, storage_options)
    found: dict[str, str] = {}
    for name in loc.children():
        if name.startswith("."):
            continue
        attrs = _group_attrs(loc, name)
        if attrs and attrs.get(RUN_MARKER) is True and attrs.get(RUN_KEY):
            found.setdefault(attrs[RUN_KEY], name)
    return found


# ------------------------------------------------------------------ writing
def _regular_chunks(ds: xr.Dataset) -> xr.Dataset:
    """Zarr needs equal chunks (but the last); rechunk dask variables that lack them."""
    out = ds.copy()
    for name in list(out.variables):
        var = out.variables[name]
        chunks = getattr(var.data, "chunks", None)
        new = {}
        for dim, c in zip(var.dims, chunks or ()):
            if len(c) > 1 and (len(set(c[:-1])) > 1 or c[-1] > c[0]):
                new[dim] = max(c)
        if new:
            out[name] = var.chunk(new)
        out.variables[name].encoding = {}
    return out


def _split_runs(ds: xr.Dataset) -> tuple[list[xr.Dataset], xr.Dataset]:
    """Per-run datasets (padding trimmed) and the run-independent variables."""
    run_vars = [v for v in ds.data_vars if "run" in ds[v].dims]
    shared_vars = [v for v in ds.data_vars if "run" not in ds[v].dims]
    runs = []
    for i in range(ds.sizes["run"]):
        part = ds[run_vars].isel(run=i)
        part.attrs = {}
        cut = {}
        for dim, size_var in TRIMMED_DIMS.items():
            if dim in part.dims and size_var in part:
                cut[dim] = slice(0, int(np.asarray(part[size_var].values)))
        runs.append(_regular_chunks(part.isel(cut)))
    shared = ds[shared_vars]
    shared.attrs = {}
    return runs, _regular_chunks(shared)


def _set_group_attrs(loc: Location, name: str, extra: dict) -> None:
    meta = loc.read_json(f"{name}/zarr.json")
    if meta is None:
        raise StoreError(f"Group {name!r} of {loc.url!r} vanished while being written.")
    meta.setdefault("attributes", {}).update(extra)
    loc.write_json(f"{name}/zarr.json", meta)


def _finalize_group(_written, loc: Location, tmp_name: str | None, name: str) -> str:
    """Mark a fully written group complete; locally, then rename it into place."""
    if tmp_name is None:  # object store: the marker is the last object written
        _set_group_attrs(loc, name, {RUN_MARKER: True})
        return name
    _set_group_attrs(loc, tmp_name, {RUN_MARKER: True})
    os.rename(os.path.join(loc.url, tmp_name), os.path.join(loc.url, name))
    return name


def _write_group(loc: Location, name: str, part: xr.Dataset, attrs: dict):
    """Delayed write of one group; its value is the group name once complete."""
    from dask import delayed

    part = part.copy()
    part.attrs = dict(attrs)
    if loc.local:
        tmp_name = f".tmp-{name}"
        written = part.to_zarr(loc.child(tmp_name), mode="w", zarr_format=3, consolidated=False,
                               compute=False, encoding=checksummed_encoding(part),
                               write_empty_chunks=True)
    else:
        tmp_name = None
        written = part.to_zarr(loc.url, group=name, mode="w", zarr_format=3, consolidated=False,
                               compute=False, storage_options=loc.storage_options or None,
                               encoding=checksummed_encoding(part), write_empty_chunks=True)
    return delayed(_finalize_group, pure=False)(written, loc, tmp_name, name)


def _commit(loc: Location, attrs: dict, run_keys: list, shared_name: str, run_names: list,
            shared_done: str, stamp: str, replace: bool) -> str:
    """Under the commit lock: write the root record (the commit), then collect garbage.

    Garbage is every daskglm group that the new root does not reference and
    no live writer claims (:func:`daskglm.store.lock.collect_garbage`).
    Without ``replace``, a root committed by another writer since this write
    began is a :class:`FileExistsError`.
    """
    root_attrs = dict(attrs)
    root_attrs.update({
        FORMAT_ATTR: FORMAT_NAME,
        FORMAT_VERSION_ATTR: FORMAT_VERSION,
        RUNS_ATTR: list(run_names),
        RUN_KEYS_ATTR: list(run_keys),
        SHARED_ATTR: shared_done,
    })
    with commit_lock(loc):
        current = loc.read_json("zarr.json")  # on object stores, a plain group made by the group writes
        if not replace and isinstance(current, dict) and FORMAT_ATTR in current.get("attributes", {}):
            raise FileExistsError(f"{loc.url!r} was committed by another writer while this one was "
                                  "writing; pass overwrite=True to replace it.")
        loc.write_json("zarr.json", {"zarr_format": 3, "node_type": "group", "attributes": root_attrs})
        _after_commit(loc, set(run_names) | {shared_name}, stamp)
    return loc.url


def _after_commit(loc: Location, keep: set[str], stamp: str) -> None:
    """Best-effort cleanup once the root is written: the commit stands whatever happens here.

    A failure is a warning (the next commit collects what is left); it never
    undoes the commit nor removes a group the new root references.
    """
    try:
        collect_garbage(loc, keep, stamp)
        remove_claim(loc, stamp)
    except Exception as err:
        warnings.warn(f"The store {loc.url!r} was committed, but removing its unreferenced groups failed "
                      f"({type(err).__name__}: {err}); the next write of the store removes them.",
                      RuntimeWarning, stacklevel=2)


def _summary(_committed, summary: WriteSummary) -> WriteSummary:
    return summary


def write_dataset(
    ds: xr.Dataset,
    path,
    overwrite: bool = False,
    compute: bool = True,
    storage_options: dict | None = None,
    resume: bool = False,
    run_keys: list[str] | None = None,
    run_sources: list[dict] | None = None,
):
    """Write a fit dataset to ``path`` (local directory or fsspec URL), atomically.

    Parameters
    ----------
    ds : xarray.Dataset
        The fit, as :func:`daskglm.store.schema.fits_to_dataset` builds it (lazy).
    path : str or path
        Local directory or fsspec URL (``s3://bucket/fit.zarr``, ``gs://...``).
    overwrite : bool, default=False
        Replace an existing store; the old fit stays readable until the new
        one is committed.
    compute : bool, default=True
        If False, return a :class:`dask.delayed.Delayed` that writes and
        commits the store (its value is the :class:`WriteSummary`).
    storage_options : dict, optional
        Passed to fsspec (e.g. ``{"endpoint_url": ..., "key": ..., "secret": ...}``).
    resume : bool, default=False
        Reuse the store's complete run groups whose key matches ``run_keys``
        and compute only the other runs.  Runs that do not match are
        replaced.
    run_keys : list of str, optional
        One key per run (see :func:`daskglm.store.keys.run_key`); without keys
        nothing is reused.
    run_sources : list of dict, optional
        Input identity of each run, recorded in its group.

    Returns
    -------
    WriteSummary or dask.delayed.Delayed
    """
    from dask import delayed

    loc = Location(path, storage_options)
    if loc.exists() and not (overwrite or resume):
        root = loc.read_json("zarr.json")
        committed = isinstance(root, dict) and FORMAT_ATTR in root.get("attributes", {})
        what = "already exists" if committed else "exists but holds no committed fit (an interrupted write?)"
        raise FileExistsError(
            f"{loc.url!r} {what}; pass overwrite=True to replace it, or resume=True "
            "to keep its complete runs and fit the rest."
        )
    n_runs = ds.sizes["run"]
    keys = list(run_keys) if run_keys is not None else [None] * n_runs
    sources = list(run_sources) if run_sources is not None else [None] * n_runs
    if len(keys) != n_runs or len(sources) != n_runs:
        raise ValueError(f"{len(keys)} run keys / {len(sources)} sources for {n_runs} runs.")
    runs, shared = _split_runs(ds)
    summary = WriteSummary(store=loc.url)
    names = []
    stamp = uuid.uuid4().hex[:16]
    loc.makedirs()
    with commit_lock(loc):  # no commit may collect the groups reused here before they are claimed
        existing = complete_run_keys(loc.url, loc.storage_options) if resume else {}
        reused = sorted({existing[k] for k in keys if k is not None and k in existing})
        write_claim(loc, stamp, reused)
    for i, (part, key, source) in enumerate(zip(runs, keys, sources)):
        if key is not None and key in existing:
            names.append(existing[key])
            summary.reused.append(i)
            continue
        attrs = {RUN_KEY: key or f"unkeyed-{uuid.uuid4().hex}", RUN_INDEX_ATTR: i,
                 RUN_SOURCE: json.dumps(source, default=str)}
        names.append(_write_group(loc, f"run{i}-{stamp}", part, attrs))
        summary.written.append(i)
    shared_name = f"shared-{stamp}"
    shared_done = _write_group(loc, shared_name, shared, {GROUP_ATTR: "shared"})
    stored_keys = [k if k is not None else "" for k in keys]
    committed = delayed(_commit, pure=False)(
        loc, dict(ds.attrs), stored_keys, shared_name, names, shared_done, stamp, overwrite or resume
    )
    result = delayed(_summary, pure=False)(committed, summary)
    if not compute:
        return result
    try:
        return compute_graph(result)[0]  # the local thread pool under one BLAS thread per task
    except BaseException as failure:
        referenced = _referenced(loc)  # a committed root keeps its groups, whatever failed after it
        if referenced is not None:  # unknown: leave the groups to the next commit's garbage collection
            # runs fitted and committed to their groups before the failure (Ctrl-C, a later run's bad
            # file) stay for a resumed write; the next commit that does not reuse them collects them.
            # A writer that lost the race for a new path (FileExistsError at commit) leaves nothing.
            lost_race = isinstance(failure, FileExistsError)
            finished = set() if lost_race else _complete_groups(loc, [f"run{i}-{stamp}" for i in summary.written])
            _discard(loc, [name for name in [f"run{i}-{stamp}" for i in summary.written] + [shared_name]
                           if name not in referenced and name not in finished])
        try:
            remove_claim(loc, stamp)
        except Exception:  # best effort, as _discard
            pass
        raise


def _complete_groups(loc: Location, names: list[str]) -> set[str]:
    """The groups of ``names`` that are complete (their marker set); none when they cannot be read."""
    complete = set()
    for name in names:
        try:
            attrs = _group_attrs(loc, name)
        except Exception:  # unreadable: not counted as complete, so it is discarded
            continue
        if attrs and attrs.get(RUN_MARKER) is True:
            complete.add(name)
    return complete


def _referenced(loc: Location) -> set[str] | None:
    """The groups the root references (empty without a root; None when it cannot be read)."""
    try:
        attrs = (loc.read_json("zarr.json") or {}).get("attributes", {})
        return {str(n) for n in attrs.get(RUNS_ATTR, [])} | {str(attrs.get(SHARED_ATTR, ""))}
    except Exception:
        return None


def _discard(loc: Location, names: list[str]) -> None:
    """Remove the groups (and their temporaries) of a failed write; they are unreferenced."""
    for name in names:
        for candidate in (name, f".tmp-{name}"):
            try:
                loc.remove(candidate)
            except Exception:  # best effort: the next commit collects leftovers
                pass
