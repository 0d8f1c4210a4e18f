"""How a study's subjects are scheduled: one task per subject, or every subject's graph.

The machinery of :func:`daskglm.studies.subjects.fit_models` (its module docstring
describes the two schedules).  ``"subjects"``: :func:`run_subjects` submits
:func:`fit_subject` once per subject; the task builds the subject's lazy fit
on the worker and computes it there with the synchronous scheduler, so that
the client does nothing per subject but submit and collect.  ``"graph"``:
:func:`fit_graph` builds every subject's graph on the client and computes them
on the cluster (one future per subject) or in one local ``dask.compute``.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Mapping
from typing import Any

import dask

from daskglm.first_level.model import FirstLevelModel
from daskglm.store.location import Location

__all__ = ["SCHEDULES", "resolve_schedule", "run_subjects", "fit_graph", "fit_subject", "failure_message",
           "subject_store", "synchronous_tasks"]


def failure_message(err: BaseException) -> str:
    """The one-line message recorded for a failed subject: ``"<type>: <message>"``."""
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"


def subject_store(root: Location, sid: str) -> str:
    return root.child(f"sub-{sid}")


def _finished(summary):
    """Graph task run after a subject's store is committed: stamps the time."""
    return summary, time.time()


def _subject_info(model: FirstLevelModel) -> dict:
    """Runs, scans, scans kept and voxels of a lazily fitted model (computes nothing)."""
    kept = [int(d.shape[0]) for d in model.design_matrices_]
    return {"runs": len(kept), "scans": sum(model.n_scans_), "scans_kept": sum(kept),
            "voxels": model.n_elements_}


def _plan(sid: str, build, root: Location, overwrite: bool, resume: bool):
    """Build one subject's lazy fit; return its delayed, time-stamped store write and its info."""
    model = build()
    write = model.to_zarr(subject_store(root, sid), overwrite=overwrite, resume=resume,
                          compute=False, storage_options=root.storage_options or None)
    info = _subject_info(model)
    return dask.delayed(_finished, pure=False)(write), info


class _SynchronousTasks:
    """Reference-counted ``dask.config.set(scheduler="synchronous")`` shared by concurrent subject tasks.

    Inside a task, dask's default scheduler is the worker's client: an eager
    step of a subject's build (the EPI mask of ``mask_img=None``, ...) would
    submit tasks from a task.  The config is process-wide, so (as
    :data:`daskglm.graph.resources.single_threaded_blas`) the first task in
    sets it and the last one out restores it.
    """

    def __init__(self):
        import threading

        self._lock, self._depth, self._config = threading.Lock(), 0, None

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                self._config = dask.config.set(scheduler="synchronous")
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._config is not None:
                self._config.__exit__(None, None, None)
                self._config = None
        return False


#: ``with synchronous_tasks:`` around a task's own dask computations (see :class:`_SynchronousTasks`).
synchronous_tasks = _SynchronousTasks()


def fit_subject(sid: str, build, root: Location, overwrite: bool, resume: bool, shared: dict):
    """One subject, start to end, inside one task (schedule ``"subjects"``).

    Returns ``("complete", WriteSummary, finished time, info)`` or
    ``("failed", message, None, info)``: a failure is data, so that the client
    records it like any other outcome.
    """
    info: dict = {}
    with synchronous_tasks:
        try:
            write, info = _plan(sid, functools.partial(build, **shared), root, overwrite, resume)
            summary, finished = write.compute(scheduler="synchronous")
        except Exception as err:  # building (inputs, designs, store) or computing (a corrupt run)
            return "failed", failure_message(err), None, info
    return "complete", summary, finished, info


SCHEDULES = ("auto", "subjects", "graph")


def resolve_schedule(schedule: str, n_subjects: int | None, client=None) -> str:
    """``"subjects"`` or ``"graph"`` for ``schedule`` (see the module docstring).

    ``"auto"`` is ``"subjects"`` under a distributed client with at least as
    many subjects as worker threads (every thread busy with a whole subject),
    else ``"graph"`` (a few subjects' runs spread over every thread).
    ``"subjects"`` needs a distributed client; without one it is ``"graph"``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}.")
    if client is None:
        return "graph"
    if schedule != "auto":
        return schedule
    try:
        threads = sum(client.nthreads().values())
    except Exception:  # pragma: no cover - a closing client
        return "graph"
    return "subjects" if n_subjects is None or n_subjects >= max(threads, 1) else "graph"


def _items(builders):
    """``(sid, builder)`` pairs of a mapping or of an iterable of pairs (consumed lazily)."""
    return iter(builders.items()) if isinstance(builders, Mapping) else iter(builders)


def run_subjects(client, builders, root: Location, overwrite: bool, resume: bool, shared: dict,
                 progress: bool, result, on_complete=None) -> tuple[list[str], dict[str, Any]]:
    """Schedule ``"subjects"``: one task per subject, one subject per free worker thread.

    As many subjects run as the cluster has threads; the next one is
    submitted when one ends, so it goes to the thread that just freed (the
    scheduler, left with queued tasks, would place them by its estimates and
    leave a worker idle at the end).  The next subjects are built (queried)
    by a client thread while the workers fit the current ones, up to as many
    as there are threads ahead.  ``on_complete(sid)`` is
    called as soon as a subject's fit is committed; if it returns a future
    (e.g. the subject's derivatives), that task keeps the thread's turn.
    """
    import queue
    import threading
    import uuid

    from distributed import as_completed

    # by value, not scattered: a task with a dependency is placed where its data is, not where a thread is
    # free (the scheduler then piles subjects on one worker); only `slots` tasks wait at once anyway
    slots = max(1, sum(client.nthreads().values()))
    token, built = uuid.uuid4().hex[:8], queue.Queue(maxsize=slots)
    order, owner, outcomes, pending, exhausted = [], {}, {}, as_completed(), [False]

    def produce() -> None:  # builds (queries) the next subjects while the workers fit the current ones
        try:
            for item in _items(builders):
                built.put(item)
        except BaseException as err:  # the builders' iterator itself failed: raised by the loop below
            built.put(_Raise(err))
        finally:
            built.put(None)

    threading.Thread(target=produce, name="daskglm-subjects", daemon=True).start()

    def submit_next() -> None:  # the next buildable subject, to the thread that just freed
        while not exhausted[0]:
            item = built.get()
            if item is None:
                exhausted[0] = True
            elif isinstance(item, _Raise):
                raise item.err
            else:
                sid, build = item
                order.append(sid)
                if isinstance(build, BaseException):  # failed before it could be built (its BIDS query)
                    result.failed[sid] = failure_message(build)
                    continue
                future = client.submit(fit_subject, sid, build, root, overwrite, resume, shared,
                                       key=f"fit-subject-{sid}-{token}", pure=False)
                owner[future.key] = (sid, True)
                pending.add(future)
                return

    for _ in range(slots):
        submit_next()
    for future in pending:  # a subject's summary as it ends; its future is then dropped
        sid, is_fit = owner.pop(future.key)
        follow = None
        if is_fit:
            try:
                outcomes[sid] = future.result()
            except Exception as err:  # the task itself was lost (a worker died, ...)
                outcomes[sid] = ("failed", failure_message(err), None, {})
            if on_complete is not None and outcomes[sid][0] == "complete":
                follow = on_complete(sid)
            if progress:  # one line, rewritten as each subject ends
                failed = sum(o[0] == "failed" for o in outcomes.values())
                print(f"\r[daskglm] subjects done: {len(outcomes)}" + (f" ({failed} failed)" if failed else ""),
                      end="", file=sys.stderr, flush=True)
        if follow is not None:  # the subject's next task keeps its thread
            owner[follow.key] = (sid, False)
            pending.add(follow)
        else:
            submit_next()
    if progress and outcomes:
        print(file=sys.stderr, flush=True)
    return order, outcomes


class _Raise:
    """An exception of the builders' iterator, carried from its thread to the loop that raises it."""

    def __init__(self, err: BaseException):
        self.err = err


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


def fit_graph(client, builders, root: Location, overwrite: bool, resume: bool, shared: dict,
               progress: bool, result, start: float) -> list[str]:
    """Schedule ``"graph"``: every subject's graph built here, computed on the cluster or locally."""
    planned, futures, kept, order = {}, {}, {}, []
    for sid, build in _items(builders):
        order.append(sid)
        if isinstance(build, BaseException):
            result.failed[sid] = failure_message(build)
            continue
        kept[sid] = functools.partial(build, **shared)
        try:
            planned[sid], result.status[sid] = _plan(sid, kept[sid], root, overwrite, resume)
        except Exception as err:  # building the graph: inputs, designs, existing store
            result.failed[sid] = failure_message(err)
        else:
            if client is not None:  # the cluster starts on it while the next subject is planned
                futures[sid] = client.compute(planned[sid])
    if not planned:
        return order
    if client is not None:
        outcomes = _gather_distributed(futures, progress)
    else:
        outcomes = _compute_local(planned, progress)
        if outcomes is None:  # isolate the failure: one subject at a time, resuming
            outcomes = {}
            for sid in planned:
                try:
                    delayed_write, _ = _plan(sid, kept[sid], root, False, True)
                    outcomes[sid] = delayed_write.compute()
                except Exception as err:
                    outcomes[sid] = err
    for sid, outcome in outcomes.items():
        if isinstance(outcome, BaseException):
            result.failed[sid] = failure_message(outcome)
        else:
            result.completed[sid], finished = outcome
            result.status[sid]["wall_s"] = round(max(0.0, finished - start), 3)
    return order
