"""How every ``daskglm`` command runs: scheduler, progress, warnings, errors.

:func:`command` wraps each subcommand handler in the one execution policy:

- ``--scheduler`` (:func:`scheduler`): ``threads``, ``processes``,
  ``synchronous`` or the address of a ``dask.distributed`` scheduler; the
  distributed client, if any, is passed to the handler as ``args.client``;
- warnings are shown once each, as one ``daskglm: warning: ...`` line;
- mistakes in the user's input (the library raises ``ValueError``,
  ``TypeError`` or ``FileNotFoundError`` for them), every ``OSError``
  (permission, read-only file system, no space left) and an unsupported
  nilearn (:class:`~daskglm.errors.NilearnVersionError`) end with one
  ``daskglm: error: ...`` line on stderr and exit status 2 (an
  :class:`ErrorPolicy` may say otherwise for its command's own errors);
  ``--traceback`` shows the full traceback instead; Ctrl-C exits with 130.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from daskglm.errors import NilearnVersionError, UsageError

__all__ = [
    "PROG",
    "LOCAL_SCHEDULERS",
    "PROGRESS_MINIMUM",
    "USER_ERRORS",
    "ErrorPolicy",
    "check_writable",
    "cli_words",
    "subject_failure",
    "command",
    "compute_with_progress",
    "local_progress",
    "write_with_progress",
    "scheduler",
]

PROG = "daskglm"
LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")
#: Seconds of work before a local progress bar appears.
PROGRESS_MINIMUM = 0.5
#: Exceptions that are the user's mistake or the environment's (every OSError: permission,
#: read-only file system, no space left, ...; a nilearn outside the supported range): one line,
#: no traceback.
USER_ERRORS = (ValueError, TypeError, OSError, NilearnVersionError)
#: Exit status of a usage error.
USAGE_STATUS = 2
#: Exit status after Ctrl-C.
INTERRUPTED_STATUS = 130


# ----------------------------------------------------------------- progress
@contextlib.contextmanager
def local_progress(show: bool) -> Iterator[None]:
    """dask's progress bar on stderr for the computations inside (local schedulers)."""
    if not show:
        yield
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(minimum=PROGRESS_MINIMUM, dt=0.2, out=sys.stderr):
        yield


def compute_with_progress(*collections, client=None, show: bool = True) -> tuple:
    """``dask.compute`` with a progress bar (local bar, or distributed's under a client).

    Parameters
    ----------
    *collections
        Dask collections to compute.
    client : distributed.Client, optional
        Compute on this client (with ``distributed.progress``).
    show : bool, default=True
        Show the progress bar.

    Returns
    -------
    tuple
        The computed values, as ``dask.compute`` returns them.
    """
    import dask

    from daskglm.graph.resources import compute

    if client is None:
        with local_progress(show):
            return compute(*collections)  # one BLAS thread per task on the local thread pool
    persisted = client.persist(list(collections))
    if show:
        from distributed import progress

        progress(persisted)
        print(file=sys.stderr)
    return tuple(dask.compute(*persisted))


def write_with_progress(model, store: str, client, show: bool, overwrite: bool = False, resume: bool = False):
    """Fit and write a model's store in one pass, with a progress bar: each run is committed as it is fitted.

    The fit is not computed beforehand: the store write computes it, so a run
    finished before an interruption stays in the store for ``--resume``
    (:mod:`daskglm.store.zarr`).  Locally the model then reads its fit from
    the store; under a client the write is one future (distributed's
    progress bar), and ``--keep-residuals`` computes the fit again.

    Returns
    -------
    daskglm.store.zarr.WriteSummary
    """
    if client is None:
        with local_progress(show):
            return model.to_zarr(store, overwrite=overwrite, resume=resume)
    future = client.compute(model.to_zarr(store, overwrite=overwrite, resume=resume, compute=False))
    if show:
        from distributed import progress

        progress(future)
        print(file=sys.stderr)
    return future.result()


# ---------------------------------------------------------------- scheduler
def _check_scheduler(spec: str) -> None:
    if spec not in LOCAL_SCHEDULERS and not re.match(r"^[a-z][a-z0-9+]*://\S+$", spec):
        raise UsageError(
            f"--scheduler {spec!r} is neither one of {list(LOCAL_SCHEDULERS)} nor an address "
            "like tcp://host:8786."
        )


@contextlib.contextmanager
def scheduler(spec: str | None, keep_active_client: bool = False) -> Iterator[Any]:
    """Set dask's scheduler for a command; yield the distributed client, if any.

    Parameters
    ----------
    spec : str or None
        ``--scheduler``: None (dask's default), one of :data:`LOCAL_SCHEDULERS`,
        or a scheduler address such as ``tcp://host:8786`` (connected for the
        duration of the command, then closed).
    keep_active_client : bool, default=False
        If a ``dask.distributed`` client is already active in this process
        (``main`` called from a session that has one), use it and leave dask's
        configuration alone, whatever ``spec`` says (after checking it).

    Raises
    ------
    UsageError
        For an invalid ``spec``, a missing ``distributed``, or a scheduler
        that cannot be reached.
    """
    import dask

    if spec is not None:
        _check_scheduler(spec)
    if keep_active_client:
        from daskglm.graph.resources import active_client

        client = active_client()
        if client is not None:
            yield client
            return
    if spec is None:
        yield None
        return
    if spec in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=spec):
            yield None
        return
    try:
        from distributed import Client
    except ImportError as err:
        raise UsageError(
            "--scheduler with an address needs dask.distributed: pip install 'daskglm[distributed]'."
        ) from err
    try:
        client = Client(spec, timeout="10s")
    except OSError as err:
        raise UsageError(f"Could not connect to the dask scheduler at {spec}: {err}") from err
    try:
        yield client
    finally:
        client.close()


# ----------------------------------------------------------- warnings, errors
class _WarningPrinter:
    """Shows each distinct warning once, as one ``daskglm: warning: ...`` line."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = cli_words(" ".join(str(message).split()))
        if text not in self.seen:
            self.seen.add(text)
            print(f"{PROG}: warning: {text}", file=sys.stderr)


#: The library's Python argument names in messages, and the command line's flags for them.
CLI_FLAGS = {"overwrite=True": "--overwrite", "resume=True": "--resume", "n_perm": "--permutations"}


def cli_words(text: str) -> str:
    """A library message as the command line says it: its flags (``--overwrite``), not Python's arguments."""
    for python, flag in CLI_FLAGS.items():
        text = text.replace(python, flag)
    return re.sub(r"derivatives_folder='([^']*)'", r"--derivatives \1", text)


def subject_failure(err: BaseException) -> str:
    """A failed subject's one-line message (``"<type>: <message>"``, as the study store records it), CLI flags."""
    from daskglm.studies.schedule import failure_message

    return cli_words(failure_message(err))


def one_line(err: BaseException) -> str:
    """An exception as one line of text, for ``daskglm: error: ...`` (CLI flags named as flags)."""
    text = " ".join(str(err).split())
    if isinstance(err, FileNotFoundError) and err.filename and not text.startswith("The"):
        text = f"No such file: {err.filename!r}"
    elif isinstance(err, OSError) and err.strerror:
        where = f": {err.filename!r}" if err.filename else ""
        text = " ".join(f"{err.strerror}{where}".split())
    return cli_words(text) or type(err).__name__


#: Bytes written (and synced) by :func:`check_writable` to prove there is room.
PROBE_BYTES = 1 << 20


def check_writable(path, directory: bool) -> None:
    """Fail fast if ``path`` (an output) cannot be written: before any heavy computation.

    A probe file of :data:`PROBE_BYTES` is written, synced and removed in the
    output folder (``path`` itself if it is an existing directory that will
    be written into, else its nearest existing parent).  URLs are not
    checked.

    Parameters
    ----------
    path : str or path
        The output (a store directory or a file).
    directory : bool
        Whether the output is a directory (a store).

    Raises
    ------
    OSError
        Permission denied, read-only file system, no space left, ... with
        the output named.
    """
    import os
    import tempfile
    from pathlib import Path

    if "://" in str(path):
        return
    target = Path(path).absolute()
    folder = target if directory and target.is_dir() else target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(20, f"cannot write the output {str(path)!r}: {str(folder)!r} is not "
                                 "a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".daskglm-probe-") as fh:
            fh.write(b"\0" * PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise type(err)(err.errno, f"cannot write the output {str(path)!r} "
                        f"({err.strerror or err})") from err


@dataclass(frozen=True)
class ErrorPolicy:
    """How a command reports the errors its handler raises.

    Attributes
    ----------
    prefix : str
        Printed before ``: error: <message>`` on stderr.
    status : int
        The exit status.
    errors : tuple of exception types
        What is reported this way; anything else propagates (a bug: traceback).
    describe : callable
        The exception as one line of text.
    """

    prefix: str = PROG
    status: int = USAGE_STATUS
    errors: tuple[type[BaseException], ...] = USER_ERRORS
    describe: Callable[[BaseException], str] = one_line


#: The policy of every command unless it says otherwise.
USAGE_ERRORS = ErrorPolicy()


def command(policy: ErrorPolicy = USAGE_ERRORS, keep_active_client: bool = False):
    """Decorator: run a subcommand handler under the CLI's execution and error policy.

    The wrapped handler takes the parsed namespace and returns the exit
    status.  Errors of the scheduler set-up always follow :data:`USAGE_ERRORS`;
    errors of the handler follow ``policy``.  ``args.traceback`` (the
    ``--traceback`` option) re-raises instead of printing.

    Parameters
    ----------
    policy : ErrorPolicy, optional
        How the handler's errors are reported (default: one
        ``daskglm: error: ...`` line, exit status 2, for :data:`USER_ERRORS`).
    keep_active_client : bool, default=False
        Passed to :func:`scheduler`.
    """

    def decorate(handler: Callable[[Any], int | None]) -> Callable[[Any], int]:
        @functools.wraps(handler)
        def run(args) -> int:
            traceback = getattr(args, "traceback", False)
            try:
                with warnings.catch_warnings(), scheduler(
                    getattr(args, "scheduler", None), keep_active_client
                ) as client:
                    warnings.simplefilter("always", UserWarning)
                    # nilearn's one RuntimeWarning of the API (a contrast reused for all runs)
                    warnings.filterwarnings("always", message="The same contrast will be used",
                                            category=RuntimeWarning)
                    warnings.showwarning = _WarningPrinter()
                    args.client = client
                    try:
                        return int(handler(args) or 0)
                    except policy.errors as err:
                        if traceback:
                            raise
                        print(f"{policy.prefix}: error: {policy.describe(err)}", file=sys.stderr)
                        return policy.status
            except USAGE_ERRORS.errors as err:
                if traceback:
                    raise
                print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
                return USAGE_STATUS
            except KeyboardInterrupt:
                print(f"{PROG}: interrupted", file=sys.stderr)
                return INTERRUPTED_STATUS

        return run

    return decorate
