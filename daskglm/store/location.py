"""Where a store lives: a local directory or an fsspec URL, behind one small API.

:class:`Location` is what the store writer and reader (and
:mod:`daskglm.studies.subjects`) use to list, read, write and remove the store's
groups and JSON documents, so that the atomicity rules of
:mod:`daskglm.store.zarr` are written once for local disks and object stores.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

__all__ = ["Location"]


def _is_local(path) -> bool:
    """Whether ``path`` is a local path (no URL scheme, or ``file://``)."""
    return "://" not in str(path) or str(path).startswith("file://")


def _local(path) -> Path:
    """The local path of ``path``, without a ``file://`` prefix."""
    s = str(path)
    return Path(s[len("file://") :] if s.startswith("file://") else s)


class Location:
    """A store root, local directory or fsspec URL (picklable: no live handles).

    Parameters
    ----------
    path : str or path-like
        Local directory (``file://`` URLs included) or fsspec URL such as
        ``s3://bucket/fit.zarr``.
    storage_options : dict, optional
        Passed to fsspec for URLs (endpoint, credentials, ...).

    Attributes
    ----------
    local : bool
        Whether the store is on the local file system.
    url : str
        Absolute local path, or the URL without a trailing ``/``.
    storage_options : dict
        The fsspec options (empty for none).
    """

    def __init__(self, path, storage_options: dict | None = None):
        self.local = _is_local(path)
        self.storage_options = dict(storage_options or {})
        if self.local:
            self.url = str(_local(path).absolute())
        else:
            self.url = str(path).rstrip("/")

    def __str__(self) -> str:
        return self.url

    def fs_path(self, name: str = ""):
        """The fsspec file system and the path of ``name`` in it.

        Parameters
        ----------
        name : str, optional
            A path relative to the root; the root itself if empty.

        Returns
        -------
        fs : fsspec.AbstractFileSystem
        path : str
        """
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, f"{root}/{name}" if name else root

    def child(self, name: str) -> str:
        """The path or URL of ``name`` under the root."""
        return os.path.join(self.url, name) if self.local else f"{self.url}/{name}"

    def exists(self) -> bool:
        """Whether anything exists at the root (object stores: bypassing fsspec's cache)."""
        if self.local:
            return os.path.lexists(self.url)
        fs, root = self.fs_path()
        fs.invalidate_cache()
        return bool(fs.exists(root))

    def read_json(self, name: str) -> dict | None:
        """The JSON document ``name`` under the root, or None if it does not exist."""
        if self.local:
            try:
                with open(os.path.join(self.url, name), "rb") as fh:
                    return json.loads(fh.read())
            except (FileNotFoundError, NotADirectoryError):
                return None
        fs, path = self.fs_path(name)
        try:
            return json.loads(fs.cat_file(path))
        except FileNotFoundError:
            return None

    def write_json(self, name: str, obj: dict) -> None:
        """Write ``obj`` as the JSON document ``name``, atomically.

        Locally the document is written to a temporary file, synced, then
        renamed into place (``os.replace``); on object stores it is one PUT.
        """
        data = json.dumps(obj, indent=2).encode()
        if self.local:
            target = os.path.join(self.url, name)
            tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)  # atomic
            except BaseException:  # a full disk, ...: leave no partial temporary behind
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return
        fs, path = self.fs_path(name)
        fs.pipe_file(path, data)  # one PUT: atomic on object stores

    def children(self) -> list[str]:
        """Names of the sub-directories (sub-prefixes) of the root, sorted."""
        if self.local:
            try:
                return sorted(e.name for e in os.scandir(self.url) if e.is_dir())
            except FileNotFoundError:
                return []
        fs, root = self.fs_path()
        fs.invalidate_cache()
        try:
            entries = fs.ls(root, detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"
        )

    def remove(self, name: str) -> None:
        """Remove ``name`` (a group or a file) under the root, if it exists."""
        if self.local:
            path = os.path.join(self.url, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.unlink(path)
            return
        fs, path = self.fs_path(name)
        try:
            fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass

    def makedirs(self) -> None:
        """Create the local root directory (replacing a file there); no-op on object stores."""
        if self.local:
            if os.path.lexists(self.url) and not os.path.isdir(self.url):
                os.unlink(self.url)
            os.makedirs(self.url, exist_ok=True)
