"""Surface spaces: :class:`SurfaceSpace`, the mask over vertices / grayordinates, and the surface checks.

The engine works on a list of in-mask *elements* (voxels, vertices or
grayordinates).  A surface run's source (:mod:`daskglm.io.gifti`,
:mod:`daskglm.io.cifti`) carries a ``geometry`` that knows its elements;
:class:`SurfaceSpace` is the :class:`~daskglm.space.base.ElementSpace` over
them.  This module also resolves the analysis mask (nilearn's rules for
``SurfaceImage`` runs), checks that all runs share one geometry, and turns
in-mask values back into maps (``SurfaceImage`` or CIFTI dense scalars).

``mask_img`` for surface runs, as nilearn 0.14.1's ``FirstLevelModel``:

- ``None``: the vertices finite in every scan of every run (nilearn's
  ``SurfaceMasker`` without a mask, which warns when it drops any);
  for CIFTI runs every grayordinate (nilearn has no CIFTI input; non-finite
  values are replaced by 0 with a warning, as for volumes);
- ``False``: every element;
- a ``SurfaceImage`` (non-zero = in) or a fitted ``SurfaceMasker`` (its
  ``mask_img_``); for CIFTI runs a CIFTI image (or path) over the same brain
  models, or a boolean array over the grayordinates.
"""

from __future__ import annotations

import warnings

import numpy as np

from daskglm.errors import MaskTypeError, MeshDimensionError, SurfaceInputError
from daskglm.io.base import RunSource
from daskglm.kernels.mesh import MeshMasker
from daskglm.space.base import ElementSpace, _frozen, is_nilearn_instance, masker_mask

__all__ = [
    "SurfaceSpace", "is_surface_source", "check_same_surface", "prepare_surface_mask", "surface_map",
    "check_surface_smoothing", "map_geometry", "check_mask_kind",
    "is_nilearn_surface_masker", "is_nilearn_surface_image",
]


def is_nilearn_surface_masker(obj) -> bool:
    """Whether ``obj`` is a nilearn ``SurfaceMasker``."""
    return is_nilearn_instance(obj, "nilearn.maskers", "SurfaceMasker")


def is_nilearn_surface_image(obj) -> bool:
    """Whether ``obj`` is a nilearn ``SurfaceImage``."""
    return is_nilearn_instance(obj, "nilearn.surface", "SurfaceImage")


class SurfaceSpace(ElementSpace):
    """The in-mask elements of a mesh (both hemispheres) or of CIFTI brain models.

    Parameters
    ----------
    mask : ndarray of bool (n_elements,)
        Over the elements of every part, concatenated in the runs' order.
    geometry : SurfaceGeometry or CiftiGeometry
    smoothing_fwhm : float or None
        Smoothing on the mesh (nilearn's), before masking.
    affine : ndarray (4, 4), optional
        Recorded with the fit (the runs' nominal affine; identity by default).
    given_masker : nilearn SurfaceMasker, optional
        The fitted masker given as ``mask_img``.
    """

    def __init__(self, mask: np.ndarray, geometry, smoothing_fwhm=None, affine: np.ndarray | None = None,
                 given_masker=None):
        self.mask = _frozen(np.array(mask, dtype=bool).ravel())
        self.geometry = geometry
        self.smoothing_fwhm = smoothing_fwhm
        self.affine = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
        self.given_masker = given_masker

    @property
    def kind(self) -> str:  # type: ignore[override]
        """``'surface'`` (GIfTI / ``SurfaceImage`` meshes) or ``'cifti'`` (grayordinates)."""
        return self.geometry.kind

    @property
    def element_name(self) -> str:  # type: ignore[override]
        """``'vertices'`` of a mesh, ``'grayordinates'`` of CIFTI brain models."""
        return "grayordinates" if self.kind == "cifti" else "vertices"

    def __repr__(self) -> str:
        return f"SurfaceSpace({self.n_elements} of {self.mask.size} elements; {self.geometry.describe()})"

    def _token_extra(self):
        return self.geometry.digest()

    def _mask_image(self):
        return self.geometry.image(self.mask, "mask")

    def stream_masker_recipe(self) -> tuple:
        return MeshMasker, (self.mask, self.geometry.parts(), self.smoothing_fwhm)

    def stream_sources(self, views: list[RunSource], raw: list[RunSource]) -> list[RunSource]:
        return list(views)  # vertices / grayordinates: no grid to resample

    def unmask(self, values, description: str = ""):
        return surface_map(values, self.mask, self.geometry, description)

    def unmask_series(self, values, description: str = ""):
        return surface_map(np.asarray(values), self.mask, self.geometry, description)

    def as_volume(self, values, name: str | None = None, attrs: dict | None = None, fill_value: float = 0.0):
        raise SurfaceInputError(
            f"A {self.kind} fit has no voxel grid to make volumes on; use space_.unmask(values) for "
            "its maps, or the (voxel) arrays as they are."
        )

    def coords(self, dim: str = "voxel") -> dict:
        return {}  # elements of a mesh or brain models: no grid coordinates

    def _nilearn_masker(self):
        """A fitted nilearn ``SurfaceMasker`` on the mask (nilearn has none for CIFTI: ``SurfaceInputError``)."""
        if self.kind != "surface":
            raise SurfaceInputError("nilearn has no masker for CIFTI grayordinates; use mask_img_ instead.")
        from nilearn.maskers import SurfaceMasker

        return SurfaceMasker(mask_img=self.mask_img, smoothing_fwhm=self.smoothing_fwhm).fit()


def is_surface_source(source: RunSource) -> bool:
    """Whether a run's elements are vertices or grayordinates (it has a ``geometry``)."""
    return getattr(source, "geometry", None) is not None


def check_same_surface(sources: list[RunSource]) -> None:
    """Every run must be a surface run on the first run's geometry.

    Raises
    ------
    SurfaceInputError
        A volume run mixed with surface runs, or runs on different meshes / brain models.
    """
    ref = sources[0].geometry
    for i, s in enumerate(sources[1:], start=1):
        if not is_surface_source(s):
            raise SurfaceInputError(f"Run {i} ({s.name}) is a volume, but run 0 is a surface run; do not mix them.")
        if ref.kind == s.geometry.kind == "surface" and (
            ref.part_names != s.geometry.part_names or ref.sizes != s.geometry.sizes
        ):
            raise MeshDimensionError(
                "Number of vertices do not match for between meshes: "
                f"run {i} ({s.geometry.describe()}) vs run 0 ({ref.describe()})."
            )
        if not ref.same_as(s.geometry):
            raise SurfaceInputError(
                f"Run {i} ({s.name}) lies on a different {ref.kind} geometry ({s.geometry.describe()}) "
                f"from run 0 ({ref.describe()})."
            )


def check_mask_kind(mask_img, source: RunSource) -> None:
    """The mask must be of the runs' kind (nilearn's "compatible types" ``TypeError``).

    Raises
    ------
    MaskTypeError
        A ``SurfaceImage`` / ``SurfaceMasker`` mask for volume runs, or a
        volume mask (image, path or ``NiftiMasker``) for ``SurfaceImage`` runs.
    """
    if mask_img is None or mask_img is False:
        return
    kind = source.geometry.kind if is_surface_source(source) else "volume"
    surface_mask = is_nilearn_surface_image(mask_img) or is_nilearn_surface_masker(mask_img)
    if (kind == "surface") != surface_mask:
        raise MaskTypeError(
            "Mask and input images must be of compatible types.\n"
            f"Got a mask of type {type(mask_img).__name__} for {kind} runs."
        )


def check_surface_smoothing(fwhm, source: RunSource) -> None:
    """Surface smoothing needs a mesh and a scalar FWHM (nilearn's ``smooth_img`` rule)."""
    if fwhm is None:
        return
    if np.ndim(fwhm) > 0:
        raise TypeError("For surface data, 'fwhm' must be a scalar.")
    if not all(part.has_mesh for part in source.geometry.parts()):
        raise SurfaceInputError(
            "smoothing_fwhm needs a surface mesh, and CIFTI files hold none; smooth the CIFTI run "
            "beforehand (e.g. wb_command -cifti-smoothing) or pass smoothing_fwhm=None."
        )


def _finite_vertices(sources: list[RunSource]) -> np.ndarray:
    """Vertices finite in every scan of every in-memory surface run (nilearn's implicit mask)."""
    keep = np.ones(sources[0].geometry.n_elements, dtype=bool)
    for s in sources:
        for t0 in range(0, s.n_scans, 256):
            block = s.read(t0, min(t0 + 256, s.n_scans))
            if block.dtype.kind == "f":
                keep &= np.isfinite(block.astype(np.float32)).all(axis=0)
    if not keep.all():
        warnings.warn(
            "Non-finite values detected in the input image. The computed mask will mask out these vertices.",
            UserWarning,
            stacklevel=3,
        )
    return keep


def prepare_surface_mask(mask_img, sources: list[RunSource]) -> np.ndarray:
    """The analysis mask of surface runs as a boolean array over their elements.

    Parameters
    ----------
    mask_img : None, False, SurfaceImage, SurfaceMasker, CIFTI image / path, or boolean array
    sources : list of RunSource
        Surface runs on one geometry.

    Returns
    -------
    ndarray of bool, shape (n_elements,)

    Raises
    ------
    SurfaceInputError
        The mask does not lie on the runs' geometry, holds NaN/inf, or selects nothing.
    """
    geometry = sources[0].geometry
    if mask_img is False:
        mask = np.ones(geometry.n_elements, dtype=bool)
    elif mask_img is None:
        if geometry.kind == "cifti":
            mask = np.ones(geometry.n_elements, dtype=bool)
        else:
            mask = _finite_vertices(sources)
    else:
        try:
            mask_img = masker_mask(mask_img)
        except ValueError as err:
            raise SurfaceInputError(str(err)) from err
        mask = geometry.mask_from_image(mask_img)
    if not mask.any():
        raise SurfaceInputError("The mask is empty: it selects no vertex.")
    return mask


def _full(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    out = np.zeros((*values.shape[:-1], mask.size), dtype=values.dtype)
    out[..., mask] = values
    return out


def surface_map(values: np.ndarray, mask: np.ndarray, geometry, description: str = ""):
    """In-mask values (V,) or (k, V) as a map on the runs' geometry.

    Returns
    -------
    nilearn.surface.SurfaceImage or nibabel.cifti2.Cifti2Image
        A ``SurfaceImage`` for surface runs (zeros outside the mask, as
        nilearn's ``SurfaceMasker.inverse_transform``), a CIFTI-2 dense scalar
        image over the input's brain models for CIFTI runs.
    """
    return geometry.image(_full(values, mask), description)



def map_geometry(img):
    """The geometry of a surface map (``SurfaceImage``), a CIFTI image or path; None for volumes."""
    from daskglm.io.cifti import CiftiGeometry, is_cifti
    from daskglm.io.gifti import SurfaceGeometry, is_surface_image

    if is_surface_image(img):
        return SurfaceGeometry(img.mesh)
    if is_cifti(img):
        import nibabel as nib

        img = nib.load(img) if not hasattr(img, "header") else img
        return CiftiGeometry(img.header.get_axis(1))
    return None
