"""Process-wide resource hygiene for the engine's tasks.

``limit_heap_fragmentation``: keep resident memory close to what is live.  glibc raises its mmap threshold dynamically after large blocks are freed, so
the next chunk-sized buffers come from the heap and are never returned to the
OS: a streaming fit that frees and reallocates ~10 MB buffers then holds
hundreds of MB it does not use.  Fixing the threshold (what the
``MALLOC_MMAP_THRESHOLD_`` environment variable does at start-up) keeps large
buffers in their own mappings, returned on free.  It is a no-op off glibc.

``single_threaded_blas``: one BLAS thread while tasks run, since dask already
runs one task per core.  ``compute`` and ``persist`` (``dask.compute`` /
``dask.persist``) hold that limit for the whole computation when dask's local
threaded scheduler runs it: per-task limits leave gaps between tasks in which
OpenBLAS's own threads wake up and spin against the scheduler's (measured: 17 %
of the seed workload's wall time, ~3.5 s of the 96x114x96x450 one).
dask.distributed workers need no help (their nanny starts them with
``OPENBLAS_NUM_THREADS=1``).  ``limit_blas_on_local_computes`` (called when a
daskglm graph is built) holds the same limit around *every* local threaded
computation, so ``xarray .values`` / ``dask.compute`` of a daskglm array are as
fast as ``compute``: under per-task limits alone, 100 trials x 96k voxels of
single-trial betas took 245-330 s instead of 12-21 s (an OpenBLAS worker thread
spinning: threadpool_info() inside such tasks sometimes reported 2 threads).

``active_client``: the ``dask.distributed`` client this process computes on, if any.

``in_dask_worker``: True inside a ``dask.distributed`` worker, whose cores are its
threads: the engine then starts no helper thread of its own (no background
decompression), as the nanny's ``OPENBLAS_NUM_THREADS=1`` does for BLAS.

``worker_threads``: how many tasks can run at once (the active client's
threads, else the local cores): how many pieces one compressed run is split
into when it has a seek index.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys

__all__ = [
    "limit_heap_fragmentation", "single_threaded_blas", "active_client", "worker_threads", "compute", "persist",
    "in_dask_worker", "limit_blas_on_local_computes",
]

_M_MMAP_THRESHOLD = -3
_THRESHOLD_BYTES = 4 << 20
_done = False


def limit_heap_fragmentation() -> None:
    """Fix glibc's mmap threshold at 4 MiB (once per process).

    Buffers above it get their own mappings, returned on free.  1 MiB (before)
    also sent the streaming loop's few-MB work arrays through mmap/munmap, whose
    page faults cost 4-9 system CPU-s of a 96x114x96x450 two-run fit (wall 11.8-14.5 s
    from NIfTI-Zarr; 9.2-9.5 s at 4 MiB, peak RSS 652 -> 679 MB).
    """
    global _done
    if _done or not sys.platform.startswith("linux"):
        return
    _done = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES)
    except (OSError, AttributeError):  # musl or no libc: nothing to tune
        pass


class _SingleThreadedBlas:
    """Reference-counted ``threadpool_limits(1)`` shared by concurrent tasks.

    threadpoolctl's limit is process-wide: with per-task ``with
    threadpool_limits(1)`` blocks, the first task to finish restores the
    original thread count under the feet of the others (oversubscription, and
    BLAS results that depend on timing).  Here the first task to enter sets
    the limit and the last one to leave restores it.
    """

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._depth = 0
        self._limiter = None

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                from threadpoolctl import threadpool_limits

                self._limiter = threadpool_limits(1)
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._limiter is not None:
                self._limiter.restore_original_limits()
                self._limiter = None
        return False


#: Use as ``with single_threaded_blas: ...`` inside dask tasks.
single_threaded_blas = _SingleThreadedBlas()


def _runs_on_local_threads() -> bool:
    """True when dask's default scheduler here is the local thread pool with more than one thread."""
    import dask
    import dask.threaded
    from dask.base import get_scheduler

    if active_client() is not None:
        return False
    scheduler = get_scheduler()  # None: the collections' default, the thread pool for arrays and delayed
    threads = dask.config.get("num_workers", None) or os.cpu_count() or 1
    return scheduler in (None, dask.threaded.get) and threads > 1


def _local_blas_limit():
    """``single_threaded_blas`` when the local thread pool will run the computation, else nothing."""
    return single_threaded_blas if _runs_on_local_threads() else contextlib.nullcontext()


def compute(*collections, **kwargs):
    """``dask.compute`` with one BLAS thread per task for its whole duration on the local thread pool."""
    import dask

    with _local_blas_limit():
        return dask.compute(*collections, **kwargs)


def persist(*collections, **kwargs):
    """``dask.persist`` under the same BLAS limit as :func:`compute`."""
    import dask

    with _local_blas_limit():
        return dask.persist(*collections, **kwargs)


class _LocalComputeBlasLimit:
    """dask local-scheduler callback holding ``single_threaded_blas`` from a computation's start to its end."""

    def __init__(self):
        import threading

        self._entered = threading.local()

    def start(self, dsk) -> None:
        stack = self._entered.__dict__.setdefault("stack", [])
        holds = _runs_on_local_threads()
        if holds:
            single_threaded_blas.__enter__()
        stack.append(holds)

    def finish(self, dsk, state, errored) -> None:
        stack = self._entered.__dict__.get("stack")
        if stack and stack.pop():
            single_threaded_blas.__exit__(None, None, None)


_local_limit_callback = None


def limit_blas_on_local_computes() -> None:
    """From now on, run every computation of dask's local thread pool with one BLAS thread (once per process).

    dask's threaded scheduler runs one task per core, and recommends one BLAS
    thread per task; library code calls this when it builds a graph, so that a
    user's ``DataArray.values`` or ``dask.compute`` gets :func:`compute`'s limit.
    ``dask.distributed`` computations are not affected (their workers limit BLAS).
    """
    global _local_limit_callback
    if _local_limit_callback is not None:
        return
    from dask.callbacks import Callback

    hooks = _LocalComputeBlasLimit()
    _local_limit_callback = Callback(start=hooks.start, finish=hooks.finish)
    _local_limit_callback.register()


def active_client():
    """The default ``dask.distributed`` client, or None (none active, or no distributed)."""
    if "distributed" not in sys.modules:  # no client can exist: do not pay the import (~0.5 s, ~50 MB)
        return None
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is optional
        return None
    try:
        return default_client()
    except ValueError:
        return None


def in_dask_worker() -> bool:
    """True when called from a task running on a ``dask.distributed`` worker."""
    if "distributed" not in sys.modules:
        return False
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def worker_threads() -> int:
    """Tasks that can run at once: the active client's worker threads, else ``os.cpu_count()``."""
    client = active_client()
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # pragma: no cover - a closing client: fall back to the local cores
            pass
    return os.cpu_count() or 1
