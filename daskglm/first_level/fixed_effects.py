"""Image-level fixed effects, blockwise and lazy until the images are made."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import dask.array as da
import numpy as np

import daskglm.compat.nilearn  # noqa: F401  (the nilearn version check: masks and maps may be nilearn's)
from daskglm.errors import NiftiInputError
from daskglm.graph.resources import compute
from daskglm.io.nifti import load_image
from daskglm.kernels.contrast import fixed_effects_params
from daskglm.space.base import masker_mask
from daskglm.space.surface import map_geometry, surface_map

__all__ = ["compute_fixed_effects", "fixed_effects_maps", "surface_fixed_effects", "check_fixed_effects_inputs",
           "MapInput", "MaskInput"]

#: A contrast or variance map: a path, a ``Nifti1Image``, a nilearn ``SurfaceImage`` or a CIFTI-2
#: dense scalar image (``Any``: nilearn's and nibabel's classes are not imported to be named).
MapInput: TypeAlias = Any
#: A mask: a path, a ``Nifti1Image``, a fitted ``NiftiMasker``, a ``SurfaceImage``, a ``SurfaceMasker``,
#: a CIFTI-2 mask, or None.
MaskInput: TypeAlias = Any


def _masked(img, mask: np.ndarray, what: str, ref_affine) -> da.Array:
    img = load_image(img, what)
    shape = tuple(img.shape[:3])
    if shape != mask.shape:
        raise NiftiInputError(f"The {what} has shape {img.shape}, the mask {mask.shape}.")
    if not np.allclose(img.affine, ref_affine, atol=1e-4):
        raise NiftiInputError(f"The {what} has a different affine from the mask.")
    data = da.from_array(img.dataobj, chunks=-1)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    coords = np.nonzero(mask)
    if data.ndim == 4:
        return data.vindex[coords].T.astype(np.float64)  # (q, V)
    return data.vindex[coords].astype(np.float64)


def check_fixed_effects_inputs(contrast_imgs: Sequence[MapInput], variance_imgs: Sequence[MapInput],
                               dofs: Sequence[float] | None = None) -> list[float]:
    """The one check of ``compute_fixed_effects``' arguments, for volume and surface maps alike.

    Parameters
    ----------
    contrast_imgs, variance_imgs : sequence
        One contrast and one variance map per run.
    dofs : sequence of float, optional
        Degrees of freedom per run.

    Returns
    -------
    list of float
        ``dofs``, or nilearn's default of 100 per run.

    Raises
    ------
    ValueError
        No contrast map, or counts that differ (nilearn's messages).
    """
    n_runs = len(contrast_imgs)
    if n_runs == 0:
        raise ValueError("No contrast images given.")
    if n_runs != len(variance_imgs):
        raise ValueError(
            f"The number of contrast images ({n_runs}) differs from the number of "
            f"variance images ({len(variance_imgs)})."
        )
    if dofs is None:
        return [100] * n_runs
    if len(dofs) != n_runs:
        raise ValueError(
            f"The number of degrees of freedom ({len(dofs)}) differs from the number of "
            f"contrast images ({n_runs})."
        )
    return list(dofs)


def _fixed_block(contrasts, variances, precision_weighted, dofs):
    return np.stack(fixed_effects_params(contrasts, variances, precision_weighted, dofs))


def fixed_effects_maps(
    contrast_imgs: Sequence[MapInput],
    variance_imgs: Sequence[MapInput],
    mask: MaskInput,
    precision_weighted: bool = False,
    dofs: Sequence[float] | None = None,
) -> tuple[da.Array, da.Array, da.Array, da.Array, np.ndarray, np.ndarray]:
    """Lazy in-mask fixed-effects arrays of volume maps.

    Same numerics as nilearn's ``compute_fixed_effects`` (see
    :func:`daskglm.kernels.contrast.fixed_effects_params`).

    Parameters
    ----------
    contrast_imgs, variance_imgs : sequence of path or Nifti1Image
        One 3D contrast and one variance map per run, on the mask's grid.
    mask : path, Nifti1Image, fitted NiftiMasker, or None
        None: the voxels non-zero and finite in the first contrast map.
    precision_weighted : bool, default=False
        Weight runs by inverse variance.
    dofs : sequence of float, optional
        Degrees of freedom per run (default 100 each, as nilearn).

    Returns
    -------
    contrast, variance, stat, z : dask.array.Array, shape (n_voxels,)
        Lazy, one value per in-mask voxel.
    mask : ndarray of bool (x, y, z)
    affine : ndarray (4, 4)
    """
    dofs = check_fixed_effects_inputs(contrast_imgs, variance_imgs, dofs)
    n_runs = len(contrast_imgs)
    mask_arr, affine = _mask_array(mask, contrast_imgs)
    cons = da.stack([_masked(c, mask_arr, "contrast image", affine) for c in contrast_imgs])
    vars_ = da.stack([_masked(v, mask_arr, "variance image", affine) for v in variance_imgs])
    if cons.ndim == 3:
        raise ValueError("compute_fixed_effects takes 3D (t) contrast images; got 4D images.")
    cons = cons.rechunk((n_runs, 65536))
    vars_ = vars_.rechunk((n_runs, 65536))
    packed = da.map_blocks(
        _fixed_block, cons, vars_, bool(precision_weighted), np.asarray(dofs, dtype=float),
        dtype=np.float64, chunks=((4,), cons.chunks[1]),
    )
    return packed[0], packed[1], packed[2], packed[3], mask_arr, affine


def _mask_array(mask, contrast_imgs):
    if mask is None:
        ref = load_image(contrast_imgs[0], "contrast image")
        data = np.asarray(ref.dataobj)
        return (data != 0) & np.isfinite(data), ref.affine
    img = load_image(masker_mask(mask), "mask")
    arr = np.asarray(img.dataobj) != 0
    if not arr.any():
        raise NiftiInputError("The mask is empty: it selects no voxel.")
    return arr, img.affine


def compute_fixed_effects(
    contrast_imgs: Sequence[MapInput],
    variance_imgs: Sequence[MapInput],
    mask: MaskInput = None,
    precision_weighted: bool = False,
    dofs: Sequence[float] | None = None,
    return_z_score: bool = True,
) -> tuple[Any, ...]:
    """Fixed effects of per-run contrasts, as nilearn's ``compute_fixed_effects``.

    Parameters
    ----------
    contrast_imgs, variance_imgs : list of path or Nifti1Image, SurfaceImage, or CIFTI dense scalars
        Surface maps go through :func:`surface_fixed_effects`.
    mask : path, Nifti1Image, fitted NiftiMasker, SurfaceImage, SurfaceMasker, or None
    precision_weighted : bool, default=False
        Weight runs by inverse variance.
    dofs : sequence of float, optional
        Degrees of freedom per run (default 100 each, as nilearn).
    return_z_score : bool, default=True
        Also return the z map (nilearn's default).

    Returns
    -------
    fixed_fx_contrast_img, fixed_fx_variance_img, fixed_fx_stat_img, fixed_fx_z_score_img
        Images of the maps' kind (``Nifti1Image``, ``SurfaceImage`` or CIFTI-2 dense scalars); the z
        map only with ``return_z_score``.
    """
    from daskglm.io.export import unmask

    if len(contrast_imgs) and map_geometry(contrast_imgs[0]) is not None:  # SurfaceImage / CIFTI maps
        images = surface_fixed_effects(contrast_imgs, variance_imgs, mask, precision_weighted, dofs)
        return images if return_z_score else images[:3]
    *arrays, mask_arr, affine = fixed_effects_maps(
        contrast_imgs, variance_imgs, mask, precision_weighted, dofs
    )
    computed = compute(*arrays)
    images = tuple(unmask(a, mask_arr, affine) for a in computed)
    return images if return_z_score else images[:3]


def surface_fixed_effects(
    contrast_imgs: Sequence[MapInput],
    variance_imgs: Sequence[MapInput],
    mask: MaskInput = None,
    precision_weighted: bool = False,
    dofs: Sequence[float] | None = None,
) -> tuple[Any, Any, Any, Any]:
    """nilearn's ``compute_fixed_effects`` on surface maps (``SurfaceImage`` or CIFTI dense scalars).

    ``mask=None`` keeps the elements finite in the first contrast map (nilearn's
    ``SurfaceMasker`` fitted on it); a ``SurfaceImage`` mask or a ``SurfaceMasker``
    (or, for CIFTI, a CIFTI mask) restricts them.

    Parameters
    ----------
    contrast_imgs, variance_imgs : sequence of SurfaceImage or CIFTI-2 dense scalar images
        One contrast and one variance map per run, on one geometry.
    mask : SurfaceImage, SurfaceMasker, CIFTI-2 image, or None
    precision_weighted : bool, default=False
        Weight runs by inverse variance.
    dofs : sequence of float, optional
        Degrees of freedom per run (default 100 each, as nilearn).

    Returns
    -------
    tuple of 4 maps
        Contrast, variance, stat and z, on the maps' geometry.
    """
    dofs = check_fixed_effects_inputs(contrast_imgs, variance_imgs, dofs)
    geometry = map_geometry(contrast_imgs[0])
    cons = np.stack([geometry.values(c, "contrast image") for c in contrast_imgs])
    vars_ = np.stack([geometry.values(v, "variance image") for v in variance_imgs])
    if mask is None:
        keep = np.isfinite(cons[0])
    else:
        keep = geometry.mask_from_image(masker_mask(mask))
    params = fixed_effects_params(cons[:, keep], vars_[:, keep], bool(precision_weighted), np.asarray(dofs, float))
    return tuple(surface_map(p, keep, geometry) for p in params)
