"""daskglm: out-of-core, distributed first-level fMRI GLM.

nilearn's ``FirstLevelModel`` API, with runs streamed from disk as lazy
dask/xarray arrays, voxel blocks solved independently, and fits persisted to
Zarr.
"""

from __future__ import annotations

from ._version import __version__
from .fixed_effects import compute_fixed_effects
from .io.dataarray import open_run
from .model import FirstLevelModel, open_model

__all__ = ["FirstLevelModel", "compute_fixed_effects", "open_model", "open_run", "__version__"]
