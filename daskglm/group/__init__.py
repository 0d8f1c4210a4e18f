"""Group level: :class:`SecondLevelModel`, :func:`non_parametric_inference`, mixed effects.

Inputs are anything nilearn's second level accepts, and daskglm study stores;
the maps are stacked by voxel blocks and every statistic is computed blockwise
on dask (the maths in :mod:`daskglm.kernels.second_level` and
:mod:`daskglm.kernels.permutation`).

- :mod:`~daskglm.group.inputs`: what a second-level analysis reads (every input nilearn accepts,
  volumes and ``SurfaceImage``s, CIFTI-2 dense scalar maps, study stores);
- :mod:`~daskglm.group.maskers`: which masker reads the maps (nilearn's, or ``CiftiMasker``), its
  element space, and which elements touch (TFCE and clusters on voxels, meshes, grayordinates);
- :mod:`~daskglm.group.graph`: dask graphs of second-level contrasts (subjects' rows to voxel
  blocks to maps);
- :mod:`~daskglm.group.model`: :class:`SecondLevelModel`, nilearn's group GLM;
- :mod:`~daskglm.group.permutation`: :func:`non_parametric_inference`, nilearn's permutation
  inference as dask tasks.
"""

from __future__ import annotations

from daskglm.group.model import SecondLevelModel
from daskglm.group.permutation import non_parametric_inference

__all__ = ["SecondLevelModel", "non_parametric_inference"]
