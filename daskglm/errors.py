"""Every exception daskglm raises on purpose, in one place.

All input errors subclass :class:`ValueError` (and :class:`NotFittedError` also
:class:`AttributeError`, as scikit-learn's), so callers that catch the builtin
types keep working.
"""

from __future__ import annotations

__all__ = [
    "NiftiInputError",
    "DesignError",
    "ContrastError",
    "NotFittedError",
    "StoreError",
    "ThresholdError",
    "SubjectsError",
    "UsageError",
    "ConfoundsError",
    "SurfaceInputError",
    "MaskTypeError",
    "MeshDimensionError",
    "GroupInputError",
    "SampleMaskError",
    "NilearnVersionError",
]


class NiftiInputError(ValueError):
    """A run or mask image that cannot be used."""


class DesignError(ValueError):
    """A design matrix, events table or confounds table that cannot be used."""


class ContrastError(ValueError):
    """A contrast definition that cannot be applied to the fitted design."""


class NotFittedError(ValueError, AttributeError):
    """The model has not been fitted yet."""


class StoreError(ValueError):
    """A path that is not a usable daskglm store."""


class ThresholdError(ValueError):
    """Invalid thresholding parameters."""


class SubjectsError(RuntimeError):
    """Raised by :meth:`daskglm.studies.subjects.SubjectsResult.raise_for_errors` when subjects failed."""


class UsageError(ValueError):
    """A command-line input that cannot be used."""


class SurfaceInputError(NiftiInputError):
    """A surface (GIfTI / SurfaceImage) or CIFTI run, mask or geometry that cannot be used."""


class GroupInputError(ValueError, TypeError):
    """A second-level input, design or option that cannot be used (wrong values or types)."""


class SampleMaskError(ValueError, IndexError):
    """A ``sample_masks`` entry that cannot be used (nilearn raises IndexError for some)."""


class ConfoundsError(DesignError):
    """A confounds file or table that cannot be used; the message names the file."""


class MaskTypeError(TypeError):
    """A surface mask given for volume runs, or a volume mask for surface runs (nilearn's TypeError)."""


class NilearnVersionError(ImportError):
    """The installed nilearn is outside the range daskglm supports (:mod:`daskglm.compat.nilearn`)."""


try:  # nilearn's class, so that code catching it keeps working
    from nilearn.exceptions import MeshDimensionError as _NilearnMeshDimensionError
except ImportError:  # pragma: no cover
    _NilearnMeshDimensionError = ValueError


class MeshDimensionError(SurfaceInputError, _NilearnMeshDimensionError):
    """Surface runs or maps whose meshes differ in parts or vertex counts."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "Meshes have incompatible dimensions."
