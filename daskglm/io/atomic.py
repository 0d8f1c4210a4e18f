"""Directories put into place whole: a store is written aside, then renamed over its target.

Used by the writers whose output is one local directory (NIfTI-Zarr runs,
beta-series stores).  A reader sees the old directory or the new one, never a
mix; a failed write leaves the old one where it was.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

__all__ = ["replace_directory"]


def replace_directory(written: Path, target: Path, overwrite: bool, what: str = "store") -> None:
    """Move the complete directory ``written`` to ``target``; an old ``target`` goes only once the new one is in.

    The target is checked again here: it may have appeared while ``written``
    was being made (another process, another thread).

    Parameters
    ----------
    written : Path
        The finished directory, on the same file system as ``target``.
    target : Path
    overwrite : bool
        Whether an existing ``target`` may be replaced.
    what : str
        What is written, for the messages.

    Raises
    ------
    FileExistsError
        ``target`` exists (or appeared during the write) and ``overwrite`` is False.
    OSError
        A rename failed; an old ``target`` moved aside is moved back first.
    """
    written, target = Path(written), Path(target)
    appeared = (f"{str(target)!r} appeared while the {what} was written; pass overwrite=True "
                "to replace it.")
    if not target.exists():
        try:
            os.rename(written, target)  # POSIX: fails if a non-empty directory appeared meanwhile
        except OSError as err:
            if target.exists():
                raise FileExistsError(appeared) from err
            raise
        return
    if not overwrite:
        raise FileExistsError(appeared)
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(target, old)
    try:
        os.rename(written, target)
    except BaseException:
        os.rename(old, target)  # the old directory back under its name
        raise
    shutil.rmtree(old, ignore_errors=True)
