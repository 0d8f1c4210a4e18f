"""The results store: one Zarr group per fit, written atomically.

Layout (xarray Dataset; voxels flat in mask order, unmasked only on export):

=================  ==============================  =====================================
variable           dims                            meaning
=================  ==============================  =====================================
beta               run, regressor, voxel           whitened GLS parameter estimates
dispersion         run, voxel                      residual variance SSE / (n - p)
ar_coef            run, ar_lag, voxel              AR coefficients used for whitening
cov_index          run, voxel                      row of cov_table for each voxel
cov_table          run, cov_entry, regressor,      pinv(WX) pinv(WX)^T per AR bin
                   regressor_b
design             run, scan, regressor            design matrix (NaN-padded)
n_scans            run                             scans per run
n_regressors       run                             columns per run
df_residuals       run                             n - rank(X)
mask               x, y, z                         the analysis mask
=================  ==============================  =====================================

Attributes hold the affine, the design column names and the model parameters
as JSON, plus ``daskglm_format`` / ``daskglm_format_version``.  No pickles.

Writes go to a temporary sibling first and are swapped in by renames only
when complete, so a reader never sees a half-written fit and a failed write
never damages an existing store.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import xarray as xr

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "StoreError", "write_dataset", "read_dataset"]

FORMAT_NAME = "daskglm-first-level-fit"
FORMAT_VERSION = 1


class StoreError(ValueError):
    """A path that is not a usable daskglm store."""


def _is_local(path) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _local(path) -> Path:
    s = str(path)
    return Path(s[len("file://") :] if s.startswith("file://") else s)


def write_dataset(ds: xr.Dataset, path, overwrite: bool = False, compute: bool = True):
    """Write a fit dataset atomically to ``path`` (local directory or fsspec URL)."""
    ds = ds.copy()
    ds.attrs = dict(ds.attrs, daskglm_format=FORMAT_NAME, daskglm_format_version=FORMAT_VERSION)
    if not _is_local(path):
        return _write_remote(ds, str(path), overwrite)
    target = _local(path)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{str(target)!r} already exists; pass overwrite=True to replace it."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=3)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)
    return target


def _write_remote(ds: xr.Dataset, url: str, overwrite: bool):
    """Object stores have no rename: write the data, then the marker last."""
    import fsspec

    fs, _, (root,) = fsspec.get_fs_token_paths(url)
    if fs.exists(root) and fs.exists(f"{root}/zarr.json"):
        if not overwrite:
            raise FileExistsError(f"{url!r} already exists; pass overwrite=True to replace it.")
        fs.rm(root, recursive=True)
    complete = ds.attrs.pop("daskglm_format")
    ds.to_zarr(url, mode="w", consolidated=True, zarr_format=3)
    import zarr

    group = zarr.open_group(url, mode="r+")
    group.attrs["daskglm_format"] = complete
    zarr.consolidate_metadata(url)
    return url


def read_dataset(path) -> xr.Dataset:
    """Open a fit store lazily and check its format."""
    if _is_local(path):
        local = _local(path)
        if not local.exists():
            raise FileNotFoundError(f"No daskglm store at {str(local)!r}.")
        path = str(local)
    try:
        ds = xr.open_zarr(path, consolidated=None)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise StoreError(f"{str(path)!r} is not a readable Zarr store: {err}") from err
    fmt = ds.attrs.get("daskglm_format")
    version = ds.attrs.get("daskglm_format_version")
    if fmt != FORMAT_NAME:
        raise StoreError(
            f"{str(path)!r} is not a complete daskglm fit store "
            f"(format attribute {fmt!r}, expected {FORMAT_NAME!r})."
        )
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise StoreError(
            f"{str(path)!r} was written in daskglm store format version {version!r}; "
            f"this daskglm reads version {FORMAT_VERSION}. Upgrade daskglm to open it."
        )
    return ds


def dumps(obj) -> str:
    return json.dumps(obj)


def loads(text: str):
    return json.loads(text)
