"""``daskglm migrate STORE``: rewrite an older store in the current format, in place.

Format 1 (one flat group) and format 2 (one group per run, no chunk
checksums) stores are read, validated and rewritten as format
:data:`~daskglm.store.schema.FORMAT_VERSION` (CRC-32C per chunk, every chunk
written) with the same atomic commit as a fit: the old fit stays readable
until the new one is committed.  The run keys are kept, so ``resume`` still
recognises the runs.
"""

from __future__ import annotations

import json

from daskglm.store.location import Location
from daskglm.store.read import _root_attrs, read_dataset
from daskglm.store.schema import FORMAT_VERSION, FORMAT_VERSION_ATTR, RUN_KEYS_ATTR

__all__ = ["migrate_store"]


def migrate_store(path, storage_options: dict | None = None) -> tuple[int, int]:
    """Rewrite the store at ``path`` in the current format (no-op if it already is).

    Parameters
    ----------
    path : str or path
        Local directory or fsspec URL.
    storage_options : dict, optional
        Passed to fsspec.

    Returns
    -------
    (int, int)
        The format versions before and after.

    Raises
    ------
    StoreError
        If the store is not a valid daskglm fit of a known format.
    """
    from daskglm.store.zarr import write_dataset

    loc = Location(path, storage_options)
    ds = read_dataset(loc.url, storage_options=storage_options, allow_format_1=True)
    before = int(_root_attrs(loc)[FORMAT_VERSION_ATTR])
    if before == FORMAT_VERSION:
        return before, before
    keys = json.loads(ds.attrs.pop(RUN_KEYS_ATTR, "null"))
    ds.attrs.pop("daskglm_store_format_version", None)
    old_arrays = list(ds.variables) if before == 1 else []
    write_dataset(ds, loc.url, overwrite=True, storage_options=storage_options,
                  run_keys=[k or None for k in keys] if keys else None)
    for name in old_arrays:  # format 1 kept its arrays at the root; no longer referenced
        loc.remove(name)
    return before, FORMAT_VERSION
