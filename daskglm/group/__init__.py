"""Group level: :class:`SecondLevelModel`, :func:`non_parametric_inference`, mixed effects.

Inputs are anything nilearn's second level accepts, and daskglm study stores
(:mod:`daskglm.group.inputs`); the maps are stacked by voxel blocks and every
statistic is computed blockwise on dask (:mod:`daskglm.group.graph`,
:mod:`daskglm.group.permutation`).
"""

from __future__ import annotations

from daskglm.group.model import SecondLevelModel
from daskglm.group.permutation import non_parametric_inference

__all__ = ["SecondLevelModel", "non_parametric_inference"]
