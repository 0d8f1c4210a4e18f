"""Writers of one store: the commit lock, writer claims and garbage collection.

Guarantees (details and limits in ``docs/stores.md``):

- **One committing writer at a time** (local disks): the commit (read the
  current root, write the new root, collect garbage) runs under an exclusive
  ``fcntl.flock`` on ``<store>/.daskglm-lock``.  The kernel releases the lock
  when its process dies, so a killed writer never leaves a stale lock.
- **A commit never deletes what another writer needs.**  Every writer first
  records a *claim* ``<store>/.daskglm-writers/<stamp>.json`` (its process,
  host, start time and the groups it reuses).  Garbage collection removes
  only daskglm groups (``run<i>-<stamp>``, ``shared-<stamp>`` and their
  ``.tmp-`` directories) that the new root does not reference and that
  belong to no live claim.  A claim is live while its process runs (same
  host) or, for another host, for :data:`CLAIM_TTL` seconds.

On object stores there is no lock (fsspec offers no portable atomic
conditional write): commits are last-writer-wins, and the claims still keep
a commit from deleting another live writer's groups.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Iterator

from daskglm.errors import StoreError
from daskglm.store.location import Location

__all__ = ["LOCK_NAME", "WRITERS_DIR", "CLAIM_TTL", "commit_lock", "write_claim", "remove_claim",
           "collect_garbage", "group_stamp"]

LOCK_NAME = ".daskglm-lock"
WRITERS_DIR = ".daskglm-writers"
#: Seconds a claim of a writer on another host counts as live.
CLAIM_TTL = 24 * 3600.0
#: Seconds to wait for another writer's commit.
LOCK_TIMEOUT = 120.0
_GROUP = re.compile(r"^(?:\.tmp-)?(?:run\d+|shared)-([0-9a-f]{8,32})$")


def group_stamp(name: str) -> str | None:
    """The writer stamp of a daskglm group name, or None for other names."""
    m = _GROUP.match(name)
    return m.group(1) if m else None


@contextlib.contextmanager
def commit_lock(loc: Location, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the store's exclusive commit lock (local disks; a no-op on object stores).

    Raises
    ------
    StoreError
        If another writer holds it for more than ``timeout`` seconds.
    """
    if not loc.local:
        yield
        return
    import fcntl

    os.makedirs(loc.url, exist_ok=True)
    fd = os.open(os.path.join(loc.url, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"{loc.url!r}: another writer has held the commit lock for more than "
                        f"{timeout:.0f} s; retry later."
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def write_claim(loc: Location, stamp: str, reused: list[str]) -> None:
    """Record that writer ``stamp`` is writing, and which existing groups it reuses."""
    claim = {"pid": os.getpid(), "host": socket.gethostname(), "created": time.time(),
             "reused": list(reused)}
    if loc.local:
        os.makedirs(os.path.join(loc.url, WRITERS_DIR), exist_ok=True)
    loc.write_json(f"{WRITERS_DIR}/{stamp}.json", claim)


def remove_claim(loc: Location, stamp: str) -> None:
    """Forget writer ``stamp``'s claim (after its commit or failure)."""
    with contextlib.suppress(Exception):
        loc.remove(f"{WRITERS_DIR}/{stamp}.json")


def _alive(claim: dict) -> bool:
    try:
        if claim.get("host") == socket.gethostname():
            os.kill(int(claim["pid"]), 0)
            return True
        return time.time() - float(claim["created"]) < CLAIM_TTL
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user: alive
        return True
    except (KeyError, TypeError, ValueError, OverflowError):
        return False


def live_claims(loc: Location) -> tuple[set[str], set[str]]:
    """Stamps of live writers and the groups they reuse; dead claims are removed."""
    stamps, reused = set(), set()
    for stamp in _claim_names(loc):
        claim = loc.read_json(f"{WRITERS_DIR}/{stamp}.json")
        if isinstance(claim, dict) and _alive(claim):
            stamps.add(stamp)
            reused.update(str(n) for n in claim.get("reused") or [])
        else:
            remove_claim(loc, stamp)
    return stamps, reused


def _claim_names(loc: Location) -> list[str]:
    if loc.local:
        try:
            names = os.listdir(os.path.join(loc.url, WRITERS_DIR))
        except (FileNotFoundError, NotADirectoryError):
            return []
    else:
        fs, path = loc.fs_path(WRITERS_DIR)
        fs.invalidate_cache()
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []
    return sorted(n[: -len(".json")] for n in names if n.endswith(".json") and group_stamp(f"shared-{n[:-5]}"))


def collect_garbage(loc: Location, keep: set[str], own_stamp: str) -> list[str]:
    """Remove daskglm groups that ``keep`` does not hold and no live writer claims.

    Call under :func:`commit_lock`.  Returns the names removed.
    """
    stamps, reused = live_claims(loc)
    stamps.discard(own_stamp)
    removed = []
    for name in loc.children():
        stamp = group_stamp(name)
        if stamp is None or name in keep or name in reused or stamp in stamps:
            continue
        loc.remove(name)
        removed.append(name)
    return removed
