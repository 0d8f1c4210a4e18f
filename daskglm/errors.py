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
    """Raised by :meth:`daskglm.subjects.SubjectsResult.raise_for_errors` when subjects failed."""


class UsageError(ValueError):
    """A command-line input that cannot be used."""
