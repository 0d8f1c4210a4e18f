"""The ``repr`` of estimators in scikit-learn's (and so nilearn's) style."""

from __future__ import annotations

import inspect

import nibabel as nib
import numpy as np

__all__ = ["estimator_repr"]


def estimator_repr(estimator) -> str:
    """``Class(param=value, ...)`` with the ``__init__`` parameters changed from their defaults,
    sorted by name as scikit-learn shows them, e.g. ``FirstLevelModel(noise_model='ols', t_r=2.0)``.
    """
    changed = []
    parameters = inspect.signature(type(estimator).__init__).parameters
    for name in sorted(parameters):
        par = parameters[name]
        if name == "self" or par.kind in (par.VAR_KEYWORD, par.VAR_POSITIONAL):
            continue
        value = getattr(estimator, name, par.default)
        if not _same_value(value, par.default):
            changed.append(f"{name}={_short_repr(value)}")
    return f"{type(estimator).__name__}({', '.join(changed)})"


def _same_value(value, default) -> bool:
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return isinstance(value, np.ndarray) and isinstance(default, np.ndarray) \
            and np.array_equal(value, default)
    try:
        return bool(value == default) and type(value) is type(default)
    except (TypeError, ValueError):
        return value is default


def _short_repr(value) -> str:
    """A parameter's value: images by their class and shape, long values cut."""
    if isinstance(value, nib.spatialimages.SpatialImage):
        return f"<{type(value).__name__} {tuple(value.shape)}>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
