"""xarray coordinates of voxels and volumes: voxel indices ``i, j, k`` and world ``x, y, z`` (mm).

Two layouts are used across daskglm:

* **volumes** (a mask, a map, a run): when the affine is axis-aligned
  (diagonal 3 x 3 part: no rotation, no axis swap) the dims are ``x, y, z``
  with 1-D world coordinates in mm, and the voxel indices ``i, j, k`` as
  extra 1-D coordinates along them, so ``vol.sel(x=-30, y=12, z=40,
  method="nearest")`` works; for an oblique affine the dims are ``i, j, k``
  (the voxel grid) and ``x, y, z`` are 3-D coordinates.
* **flat voxels** (the fit's per-voxel arrays, in the mask's C order): the
  ``voxel`` dim carries 1-D coordinates ``i, j, k`` (int) and ``x, y, z``
  (mm) of each in-mask voxel.

World coordinates are ``affine @ [i, j, k, 1]``, as in nibabel.  The
attributes follow the CF conventions (``units``, ``long_name``,
``standard_name`` where one exists).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = [
    "WORLD_DIMS",
    "INDEX_DIMS",
    "is_axis_aligned",
    "volume_dims",
    "volume_coords",
    "voxel_coords",
    "to_volume",
]

WORLD_DIMS = ("x", "y", "z")
INDEX_DIMS = ("i", "j", "k")

_WORLD_ATTRS = {
    "x": {"units": "mm", "long_name": "world x (scanner or template space, RAS+)", "axis": "X"},
    "y": {"units": "mm", "long_name": "world y (scanner or template space, RAS+)", "axis": "Y"},
    "z": {"units": "mm", "long_name": "world z (scanner or template space, RAS+)", "axis": "Z"},
}
_INDEX_ATTRS = {
    name: {"units": "1", "long_name": f"voxel index along the image's axis {n}"}
    for n, name in enumerate(INDEX_DIMS)
}


def is_axis_aligned(affine) -> bool:
    """Whether the affine maps each voxel axis to one world axis, in order (diagonal 3 x 3)."""
    rot = np.asarray(affine, dtype=float)[:3, :3]
    return bool(np.all(rot[~np.eye(3, dtype=bool)] == 0) and np.all(np.diag(rot) != 0))


def volume_dims(affine) -> tuple[str, str, str]:
    """The spatial dims of a volume: ``(x, y, z)`` if axis-aligned, else ``(i, j, k)``."""
    return WORLD_DIMS if is_axis_aligned(affine) else INDEX_DIMS


def volume_coords(shape, affine) -> dict:
    """Coordinates of a volume of spatial ``shape`` on the grid of ``affine``.

    Returns
    -------
    dict
        name -> (dims, values, attrs), for :class:`xarray.DataArray` or
        :class:`xarray.Dataset` ``coords``; dims as :func:`volume_dims`.
    """
    affine = np.asarray(affine, dtype=float)
    shape = tuple(int(n) for n in shape[:3])
    dims = volume_dims(affine)
    coords = {}
    if dims == WORLD_DIMS:
        for axis, (world, index) in enumerate(zip(WORLD_DIMS, INDEX_DIMS)):
            steps = np.arange(shape[axis])
            coords[world] = (world, affine[axis, axis] * steps + affine[axis, 3], _WORLD_ATTRS[world])
            coords[index] = (world, steps, _INDEX_ATTRS[index])
        return coords
    grid = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ grid + affine[:3, 3:4]
    for axis, index in enumerate(INDEX_DIMS):
        coords[index] = (index, np.arange(shape[axis]), _INDEX_ATTRS[index])
    for axis, name in enumerate(WORLD_DIMS):
        coords[name] = (INDEX_DIMS, world[axis].reshape(shape), _WORLD_ATTRS[name])
    return coords


def voxel_coords(mask, affine, dim: str = "voxel") -> dict:
    """Coordinates ``i, j, k`` and ``x, y, z`` (mm) of the in-mask voxels, in C order.

    Parameters
    ----------
    mask : ndarray of bool (x, y, z)
    affine : ndarray (4, 4)
    dim : str, default='voxel'

    Returns
    -------
    dict
        name -> (dim, values, attrs).
    """
    if np.ndim(mask) != 3:  # surface / CIFTI elements (daskglm.io.gifti, daskglm.io.cifti): no grid
        return {}
    ijk = np.nonzero(np.asarray(mask, dtype=bool))
    affine = np.asarray(affine, dtype=float)
    world = affine[:3, :3] @ np.stack(ijk).astype(float) + affine[:3, 3:4]
    coords = {name: (dim, ijk[n].astype(np.int32), _INDEX_ATTRS[name]) for n, name in enumerate(INDEX_DIMS)}
    coords.update({name: (dim, world[n], _WORLD_ATTRS[name]) for n, name in enumerate(WORLD_DIMS)})
    return coords


def to_volume(values, mask, affine, name: str | None = None, attrs: dict | None = None,
              fill_value: float = np.nan, voxel_dim: str = "voxel") -> xr.DataArray:
    """Put per-voxel values (in-mask, C order) back on the volume grid, lazily if dask-backed.

    Parameters
    ----------
    values : xarray.DataArray, dask or numpy array
        Last axis (or the ``voxel`` dim of a DataArray) over the in-mask
        voxels; leading dims (e.g. ``run``, ``regressor``) are kept, with
        their coordinates.
    mask : ndarray of bool (x, y, z)
    affine : ndarray (4, 4)
    name : str, optional
    attrs : dict, optional
        Added to the DataArray's attributes (``affine`` is always set).
    fill_value : float, default=nan
        Value outside the mask (nibabel's images of nilearn use 0).
    voxel_dim : str, default='voxel'

    Returns
    -------
    xarray.DataArray
        Dims ``(..., x, y, z)`` (or ``(..., i, j, k)`` for an oblique affine)
        with voxel and world coordinates (:func:`volume_coords`).
    """
    import dask.array as da

    mask = np.asarray(mask, dtype=bool)
    affine = np.asarray(affine, dtype=float)
    if isinstance(values, xr.DataArray):
        if voxel_dim not in values.dims:
            raise ValueError(f"The DataArray has no {voxel_dim!r} dim (dims: {values.dims}).")
        lead = [d for d in values.dims if d != voxel_dim]
        data = values.transpose(*lead, voxel_dim).data
        lead_coords = {c: values.coords[c] for c in values.coords if voxel_dim not in values.coords[c].dims}
        name = values.name if name is None else name
        base_attrs = dict(values.attrs)
    else:
        data = values
        lead = [f"dim_{n}" for n in range(np.ndim(values) - 1)]
        lead_coords, base_attrs = {}, {}
    n_voxels = int(mask.sum())
    if data.shape[-1] != n_voxels:
        raise ValueError(f"Got {data.shape[-1]} values per map for a mask of {n_voxels} voxels.")
    dtype = np.result_type(data.dtype, np.asarray(fill_value).dtype)
    flat_index = np.flatnonzero(mask)
    if isinstance(data, da.Array):
        data = data.rechunk({data.ndim - 1: -1})
        volume = da.map_blocks(
            _scatter, data, flat_index, mask.shape, fill_value, dtype, dtype=dtype,
            drop_axis=data.ndim - 1, new_axis=list(range(data.ndim - 1, data.ndim + 2)),
            chunks=(*data.chunks[:-1], *((n,) for n in mask.shape)), token="to-volume",
        )
    else:
        volume = _scatter(np.asarray(data), flat_index, mask.shape, fill_value, dtype)
    out = xr.DataArray(volume, dims=(*lead, *volume_dims(affine)), name=name)
    out = out.assign_coords({**lead_coords, **volume_coords(mask.shape, affine)})
    out.attrs = {**base_attrs, **(attrs or {}), "affine": affine.tolist()}
    return out


def _scatter(block, flat_index, shape, fill_value, dtype=None):
    block = np.asarray(block)
    out = np.full((*block.shape[:-1], int(np.prod(shape))), fill_value,
                  dtype=dtype or np.result_type(block.dtype, np.asarray(fill_value).dtype))
    out[..., flat_index] = block
    return out.reshape(*block.shape[:-1], *shape)
