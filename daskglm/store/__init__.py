"""Persistence of fits: Zarr stores, local or on object storage.

- :mod:`~daskglm.store.location`: :class:`Location`, a local directory or an fsspec URL;
- :mod:`~daskglm.store.keys`: resume identity (:func:`run_key`, :func:`run_keys`);
- :mod:`~daskglm.store.schema`: the fit as an :class:`xarray.Dataset`, and the format constants;
- :mod:`~daskglm.store.geometry`: the surface or CIFTI geometry of a fit (standard meshes by
  name, other meshes as arrays);
- :mod:`~daskglm.store.zarr`: atomic, resumable writes (:func:`write_dataset`);
- :mod:`~daskglm.store.read`: validated, checksum-verified reads (:func:`read_dataset`,
  :func:`read_fit`), with :mod:`~daskglm.store.validate` (schema) and
  :mod:`~daskglm.store.integrity` (codecs, chunk checks);
- :mod:`~daskglm.store.lock`: the commit lock and writer claims (concurrent writers);
- :mod:`~daskglm.store.migrate`: rewriting older formats (``daskglm migrate``).

Guarantees and limits: ``docs/stores.md``.
"""

from __future__ import annotations

from daskglm.errors import StoreError
from daskglm.store.keys import run_key, run_keys, run_sources, source_identity
from daskglm.store.location import Location
from daskglm.store.migrate import migrate_store
from daskglm.store.schema import FORMAT_NAME, FORMAT_VERSION, fits_from_dataset, fits_to_dataset
from daskglm.store.zarr import WriteSummary, complete_run_keys, read_dataset, read_fit, write_dataset

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Location",
    "StoreError",
    "WriteSummary",
    "complete_run_keys",
    "fits_from_dataset",
    "fits_to_dataset",
    "migrate_store",
    "read_dataset",
    "read_fit",
    "run_key",
    "run_keys",
    "run_sources",
    "source_identity",
    "write_dataset",
]
