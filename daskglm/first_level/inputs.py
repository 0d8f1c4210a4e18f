"""What ``FirstLevelModel.fit`` streams: runs, designs, censoring, and the element space.

:func:`fit_inputs` validates ``fit``'s arguments and builds the engine's
inputs without reading volume data (except nilearn's EPI mask for
``mask_img=None``): the runs as sources (:func:`daskglm.io.runs.as_run_source`),
the designs (:mod:`daskglm.glm.design`), the kept scans
(:mod:`daskglm.glm.sample_masks`, censored views from :mod:`daskglm.io.views`)
and the element space (:func:`daskglm.space.build.plan_space`, then
:meth:`~daskglm.space.build.SpacePlan.build`: the mask,
smoothing and target grid, and the runs resampled onto it when needed).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from daskglm.glm.design import DESIGN_PARAMS, run_designs
from daskglm.glm.sample_masks import censor_design, check_sample_masks, sample_masks_from_confounds
from daskglm.io.base import RunSource
from daskglm.io.runs import as_run_source
from daskglm.io.views import CensoredRunSource
from daskglm.space.base import ElementSpace
from daskglm.space.build import plan_space

__all__ = ["FitInputs", "fit_inputs"]


@dataclass
class FitInputs:
    """Everything the engine streams (see :func:`fit_inputs`)."""

    sources: list[RunSource]
    designs: list[pd.DataFrame]
    space: ElementSpace
    sample_masks: list[np.ndarray | None] | None


def _warn_ignored_design_parameters(model) -> None:
    """nilearn's warning for design parameters set away from their defaults next to given designs."""
    defaults = inspect.signature(type(model).__init__).parameters
    changed = []
    for name in sorted(DESIGN_PARAMS):
        value, default = getattr(model, name), defaults[name].default
        try:
            differ = bool(value != default)
        except (TypeError, ValueError):
            differ = True
        if differ:
            changed.append(name)
    if changed:
        warnings.warn(
            f"If design matrices are supplied, [{', '.join(changed)}] will be ignored.",
            UserWarning, stacklevel=4,
        )


def fit_inputs(model, run_imgs, events, confounds, sample_masks, design_matrices) -> FitInputs:
    """Validate ``fit``'s arguments and build the engine's inputs.

    In nilearn's order, and reading no data until everything cheap is
    checked: the runs' headers; the masker's decisions and checks
    (:func:`daskglm.space.build.plan_space`: one grid or mesh, a mask of the
    runs' kind, smoothing); the designs and the kept scans (``sample_masks``,
    or those the confounds carry); then the element space itself
    (:meth:`~daskglm.space.build.SpacePlan.build`: a given mask, or nilearn's
    EPI mask from the runs, and the runs as streamed: censored, resampled
    onto the mask's crop when its grid is not theirs).
    """
    runs = run_imgs if isinstance(run_imgs, (list, tuple)) else [run_imgs]
    if len(runs) == 0:
        raise ValueError("run_imgs is empty; give at least one 4D image.")
    raw = [as_run_source(r, i) for i, r in enumerate(runs)]
    plan = plan_space(model, raw)
    design_params = {name: getattr(model, name) for name in DESIGN_PARAMS}
    if design_matrices is not None:
        _warn_ignored_design_parameters(model)
    designs = run_designs(raw, events, confounds, design_matrices, design_params)
    n_scans = [s.n_scans for s in raw]
    if sample_masks is None and design_matrices is None:  # given designs ignore the confounds and their masks
        sample_masks = sample_masks_from_confounds(confounds, n_scans)
    kept = check_sample_masks(sample_masks, n_scans)
    views = raw if kept is None else [s if k is None else CensoredRunSource(s, k) for s, k in zip(raw, kept)]
    if kept is not None:
        designs = [censor_design(d, k) for d, k in zip(designs, kept)]
    _warn_no_residual_df(designs)
    space, sources = plan.build(views)
    return FitInputs(sources, designs, space, kept)


def _warn_no_residual_df(designs: list[pd.DataFrame]) -> None:
    """nilearn fits n <= p with the pseudo-inverse and numpy's warnings; name the cause once."""
    for i, design in enumerate(designs):
        n, p = design.shape
        if n <= p:
            warnings.warn(
                f"Design matrix {i} has {p} columns for {n} (kept) scans: no residual degrees of "
                "freedom. It is fitted with the pseudo-inverse as nilearn does: effects are the "
                "minimum-norm solution; t statistics, z and p are NaN, and F statistics follow "
                "nilearn's arithmetic on a non-positive residual variance (meaningless values).",
                RuntimeWarning, stacklevel=4,
            )
