"""Random access into ``.nii.gz`` runs through a seek index (optional: ``rapidgzip``).

gzip has no random access: reading volume ``t`` means decompressing everything
before it.  A *seek index* (the decompressor's state - compressed bit offset
and the last 32 KiB of output - at checkpoints every few MiB) removes that:
from the nearest checkpoint, any byte range decompresses on its own.  With an
index, the time chunks of one compressed run become independent tasks, like
the chunks of a ``.nii`` run (:func:`daskglm.graph.stream.run_stats`).

The index is built once per file, by one sequential pass of ``rapidgzip``
(about the cost of one ISA-L decompression), and cached on disk in :func:`index_dir` (``DASKGLM_GZIP_INDEX_DIR``,
default ``~/.cache/daskglm/gzip-index``) under a name derived from the file's
resolved path, size and modification time, so a changed file gets a new index.
A cache folder must belong to the user and be writable by nobody else
(:func:`private_dir`); otherwise, and when it cannot be written, indexes go to
the user's own ``daskglm-gzip-index-<uid>`` folder (mode 0o700) in the
temporary folder (:func:`fallback_dir`).
``rapidgzip`` is an optional dependency (``pip install daskglm[fast]``):
without it, compressed runs are streamed front to back.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["available", "index_dir", "index_path", "private_dir", "fallback_dir", "build_index", "read_range",
           "iter_range"]

#: decompression threads of the one-off indexing pass (0: all cores).  One: rapidgzip's parallel
#: decoder (speculative, with marker resolution) spends ~3x the CPU of its sequential one, which
#: runs at ISA-L's speed, and the other workers have their own runs or pieces to process.
INDEX_THREADS = 1


def available() -> bool:
    """True when ``rapidgzip`` is installed."""
    try:
        import rapidgzip  # noqa: F401
    except ImportError:
        return False
    return True


def index_dir() -> Path:
    """Where seek indexes are cached (``DASKGLM_GZIP_INDEX_DIR`` or ``~/.cache/daskglm/gzip-index``)."""
    env = os.environ.get("DASKGLM_GZIP_INDEX_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "daskglm" / "gzip-index"


def private_dir(path: Path, follow_symlinks: bool = False) -> bool:
    """Create ``path`` (mode 0o700) if needed; True if it is a directory of this user that only it can write.

    Indexes are trusted (rapidgzip imports them): a folder another user owns,
    or that the group or others may write, is never used.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(path) if follow_symlinks else os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return False
    return os.access(path, os.W_OK)


def fallback_dir() -> Path:
    """This user's index folder in the temporary folder (``daskglm-gzip-index-<uid>``, mode 0o700).

    If that name is taken by a folder that is not private to this user, a new
    private folder (not shared between processes) is made instead.
    """
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    path = Path(tempfile.gettempdir()) / f"daskglm-gzip-index-{uid}"
    if private_dir(path):
        return path
    return Path(tempfile.mkdtemp(prefix=f"daskglm-gzip-index-{uid}-"))


def index_path(path: str | os.PathLike, upto: int | None = None) -> Path:
    """The cache file of ``path``'s index (keyed by resolved path, size and mtime; ``upto``: partial)."""
    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha1(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:24]
    extent = "" if upto is None else f".upto{int(upto)}"
    return index_dir() / f"{path.name}.{key}{extent}.gzidx"


def build_index(path: str | os.PathLike, upto: int | None = None, threads: int = INDEX_THREADS) -> str:
    """Build (or find in the cache) the seek index of a gzip file; return its path.

    Parameters
    ----------
    path : path-like
        A gzip file.
    upto : int, optional
        Only index the first ``upto`` uncompressed bytes (enough to seek anywhere before them):
        the indexing pass then stops there.  A cached full index is used if there is one.
    threads : int
        Decompression threads for the indexing pass (0: ``os.cpu_count()``).

    Returns
    -------
    str
        Path of the index file (written atomically, so concurrent builders are safe).
    """
    import rapidgzip

    full = index_path(path)
    target = index_path(path, upto) if upto is not None else full
    if not private_dir(full.parent, follow_symlinks=True):
        # an unwritable or untrusted cache: index into this user's private temporary folder instead
        cache = fallback_dir()
        full, target = cache / full.name, cache / target.name
    if full.exists():
        return str(full)
    if target.exists():
        return str(target)
    threads = threads or os.cpu_count() or 1
    remaining = float("inf") if upto is None else int(upto)
    with rapidgzip.RapidgzipFile(str(path), parallelization=threads) as fh:
        while remaining > 0:
            got = len(fh.read(int(min(remaining, 1 << 24))))
            if not got:
                target = full  # the whole stream was read: the index is complete
                break
            remaining -= got
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        os.close(fd)
        try:
            fh.export_index(tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return str(target)


def read_range(path: str | os.PathLike, index: str, offset: int, out: np.ndarray) -> int:
    """Decompress ``len(out)`` bytes from uncompressed ``offset`` into ``out`` (uint8) using ``index``.

    Returns
    -------
    int
        Bytes read (fewer than ``len(out)`` only if the stream ends first).
    """
    import rapidgzip

    view = memoryview(out).cast("B")
    filled = 0
    with rapidgzip.RapidgzipFile(str(path), parallelization=1) as fh:
        with open(index, "rb") as idx:
            fh.import_index(idx)
        fh.seek(offset)
        while filled < len(view):
            got = fh.readinto(view[filled:])
            if not got:
                break
            filled += got
    return filled


def iter_range(path: str | os.PathLike, index: str, offset: int, sizes, buf: np.ndarray):
    """Decompress consecutive pieces of ``sizes`` bytes from uncompressed ``offset``, one open file.

    Each piece is read into the front of ``buf`` (uint8, at least ``max(sizes)`` long) and that
    view is yielded; it is valid until the next piece is requested.  A short piece (end of
    stream) is yielded short.
    """
    import rapidgzip

    with rapidgzip.RapidgzipFile(str(path), parallelization=1) as fh:
        with open(index, "rb") as idx:
            fh.import_index(idx)
        fh.seek(offset)
        for size in sizes:
            view = memoryview(buf[:size]).cast("B")
            filled = 0
            while filled < size:
                got = fh.readinto(view[filled:])
                if not got:
                    break
                filled += got
            yield buf[:filled]
