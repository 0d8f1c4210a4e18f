"""The element space of a fit: the one object that knows where a fit's values live.

A GLM is fitted per *element*: a voxel of a volume mask, a vertex of a mesh,
a grayordinate of a CIFTI file.  Everything that depends on which kind of
element a fit has — how a streamed scan is smoothed and masked, how in-mask
values become an image again, which coordinates label them, which nilearn
masker stands for them — is asked of one :class:`ElementSpace`, built once
by ``FirstLevelModel.fit`` (:func:`daskglm.space.build.plan_space`, then
:meth:`~daskglm.space.build.SpacePlan.build`) or by a store reader
(:func:`daskglm.space.build.element_space`, from the mask, affine and
geometry the store records), and held by the fitted state.  No code outside
:mod:`daskglm.space` inspects a run or a fit to tell volumes from surfaces;
code that writes or draws maps in a kind's own format (NIfTI, GIfTI, CIFTI)
reads the space's ``kind``.

Two implementations: :class:`daskglm.space.volume.VolumeSpace` (a boolean
mask on a voxel grid, its affine, the smoothing, and the crop of that grid
the runs are streamed on when they are resampled) and
:class:`daskglm.space.surface.SurfaceSpace` (a boolean mask over the elements
of a mesh or of CIFTI brain models, and their geometry).
"""

from __future__ import annotations

import functools
import sys
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

__all__ = ["ElementSpace", "masker_mask", "is_nilearn_masker", "is_nilearn_instance"]


class ElementSpace(ABC):
    """Where a fit's values live, and how they become images again.

    Attributes
    ----------
    kind : {'volume', 'surface', 'cifti'}
    mask : ndarray of bool
        ``(x, y, z)`` for volumes, ``(n_elements,)`` for surfaces and CIFTI;
        in-mask values are flat in its C order everywhere.
    affine : ndarray (4, 4)
        The mask's affine (identity for surfaces).
    smoothing_fwhm : float, sequence of 3 floats, or None
        The smoothing applied to each scan before masking (validated).
    geometry : SurfaceGeometry, CiftiGeometry or None
        The mesh / brain models of a surface space (``None`` for volumes).
    given_masker : nilearn masker or None
        The fitted masker given as ``mask_img``, returned by :meth:`to_nilearn`.
    """

    kind: str
    mask: np.ndarray
    affine: np.ndarray
    smoothing_fwhm: Any = None
    geometry: Any = None
    given_masker: Any = None

    #: what the elements are called, for messages: ``"voxels"``, ``"vertices"``, ``"grayordinates"``
    element_name: str = "elements"

    @property
    def n_elements(self) -> int:
        """Number of in-mask elements (nilearn's ``n_elements_``)."""
        return int(np.count_nonzero(self.mask))

    @functools.cached_property
    def mask_img(self):
        """The mask as an image of the space's kind (uint8 NIfTI, ``SurfaceImage`` or CIFTI)."""
        return self._mask_image()

    @abstractmethod
    def _mask_image(self):
        """The mask as an image (built once, by :attr:`mask_img`)."""

    @abstractmethod
    def stream_masker_recipe(self) -> tuple:
        """``(kernel class, arguments)`` of the stream masker: plain arrays, light to ship to workers."""

    def stream_masker(self):
        """The kernel that smooths and masks streamed scans (pure numpy, :mod:`daskglm.kernels`)."""
        factory, args = self.stream_masker_recipe()
        return factory(*args)

    @abstractmethod
    def stream_sources(self, views: list, raw: list) -> list:
        """The runs as the engine streams them, from ``views`` (the runs as read: censored views of ``raw``).

        A volume space cropped for resampling reads each whole run once here
        (its value range, which nilearn's resampling clips to).
        """

    @abstractmethod
    def unmask(self, values, description: str = ""):
        """In-mask values ``(V,)`` or ``(k, V)`` as an image of the space's kind."""

    @abstractmethod
    def unmask_series(self, values, description: str = ""):
        """In-mask time series ``(scans, V)`` (dask or numpy) as a 4D image, lazily where the format allows."""

    @abstractmethod
    def as_volume(self, values, name: str | None = None, attrs: dict | None = None, fill_value: float = 0.0):
        """In-mask values ``(..., V)`` as a labelled volume ``xarray.DataArray`` (volumes only)."""

    @abstractmethod
    def coords(self, dim: str = "voxel") -> dict:
        """xarray coordinates of the in-mask elements (``name -> (dim, values, attrs)``)."""

    def to_nilearn(self):
        """A fitted nilearn masker equivalent to this space: the one given as ``mask_img``, or a new one."""
        return self.given_masker if self.given_masker is not None else self._nilearn_masker()

    @abstractmethod
    def _nilearn_masker(self):
        """A new fitted nilearn masker on the space's mask, smoothing as the fit."""

    def same_elements(self, other: ElementSpace) -> bool:
        """Whether ``other`` has the same in-mask elements, in the same order, on the same grid or geometry."""
        return (self.kind == other.kind and self.mask.shape == other.mask.shape
                and bool(np.array_equal(self.mask, other.mask)) and self._same_place(other))

    def _same_place(self, other: ElementSpace) -> bool:
        """Same grid (volumes: the affine) or geometry (surfaces: mesh / brain models)."""
        if self.geometry is None:
            return bool(np.allclose(self.affine, other.affine))
        return bool(self.geometry.same_as(other.geometry))

    def __dask_tokenize__(self) -> str:
        # dask's tokenize hashes the arrays' bytes (a tuple returned as is would be hashed by its str(),
        # which numpy abbreviates for large masks)
        from dask.base import tokenize

        return tokenize(type(self).__name__, self.kind, self.mask, self.affine, self.smoothing_fwhm,
                        self._token_extra())

    def _token_extra(self):
        return None


def _frozen(array: np.ndarray) -> np.ndarray:
    """``array``, read-only: a fitted space never changes (spaces copy what they are given)."""
    array.flags.writeable = False
    return array


def is_nilearn_instance(obj, module: str, *names: str) -> bool:
    """Whether ``obj`` is an instance of nilearn's ``module.name`` (for any of ``names``).

    An instance of a nilearn class means its module is imported already, so
    this never imports nilearn (``nilearn.maskers`` pulls in scikit-learn,
    ~0.6 s) to find out that a path or an image is not one.
    """
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(obj, tuple(getattr(loaded, n) for n in names))


def is_nilearn_masker(obj) -> bool:
    """Whether ``obj`` is a nilearn masker (``NiftiMasker``, ``MultiNiftiMasker``, ``SurfaceMasker``, ...)."""
    return is_nilearn_instance(obj, "nilearn.maskers", "BaseMasker", "SurfaceMasker")


def masker_mask(mask):
    """The mask image of a nilearn masker given where a mask is expected; anything else as it is.

    A fitted masker gives its ``mask_img_``, an unfitted one the ``mask_img``
    it was built with (nilearn's maskers accept both where a mask goes).

    Raises
    ------
    ValueError
        A masker that holds no mask (an unfitted masker built without one).
    """
    if not is_nilearn_masker(mask):
        return mask
    fitted = getattr(mask, "mask_img_", None)
    own = fitted if fitted is not None else getattr(mask, "mask_img", None)
    if own is None:
        raise ValueError(f"The {type(mask).__name__} given as a mask holds no mask; fit it first.")
    return own
