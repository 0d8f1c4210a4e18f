"""Keep the process's resident memory close to what is really live.

glibc raises its mmap threshold dynamically after large blocks are freed, so
the next chunk-sized buffers come from the heap and are never returned to the
OS: a streaming fit that frees and reallocates ~10 MB buffers then holds
hundreds of MB it does not use.  Fixing the threshold (what the
``MALLOC_MMAP_THRESHOLD_`` environment variable does at start-up) keeps large
buffers in their own mappings, returned on free.  It is a no-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["limit_heap_fragmentation"]

_M_MMAP_THRESHOLD = -3
_THRESHOLD_BYTES = 1 << 20
_done = False


def limit_heap_fragmentation() -> None:
    """Fix glibc's mmap threshold at 1 MiB (once per process)."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return
    _done = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES)
    except (OSError, AttributeError):  # musl or no libc: nothing to tune
        pass
