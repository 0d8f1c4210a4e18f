"""daskglm: out-of-core, distributed first-level fMRI GLM.

nilearn's ``FirstLevelModel`` API, with runs streamed from disk as lazy
dask/xarray arrays, voxel blocks solved independently, and fits persisted to
Zarr.

The public names are imported on first use (PEP 562 ``__getattr__``), so
``from daskglm import FirstLevelModel`` does not pay for the group-level
models (nilearn's second level, scikit-learn) it does not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from daskglm._version import __version__

#: public name -> submodule defining it
_EXPORTS = {
    "FirstLevelModel": ".first_level.model",
    "open_model": ".betas.opening",  # FirstLevelModel and BetaSeriesModel stores
    "SecondLevelModel": ".group",
    "non_parametric_inference": ".group",
    "compute_fixed_effects": ".first_level.fixed_effects",
    "open_run": ".io.dataarray",
    "to_nifti_zarr": ".io.nifti_zarr_write",
    "first_level_from_bids": ".studies.bids.first_level",
    "fit_bids": ".studies.bids.study",
    "open_subject": ".studies.subjects",
    "fit_subjects": ".studies.subjects",
    "BetaSeriesModel": ".betas.model",
}

__all__ = ["FirstLevelModel", "SecondLevelModel", "non_parametric_inference", "compute_fixed_effects", "open_model", "open_run", "__version__",
           "first_level_from_bids", "fit_bids", "open_subject", "fit_subjects",
           "BetaSeriesModel", "to_nifti_zarr"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from daskglm.betas.model import BetaSeriesModel
    from daskglm.betas.opening import open_model
    from daskglm.first_level.fixed_effects import compute_fixed_effects
    from daskglm.first_level.model import FirstLevelModel
    from daskglm.group import SecondLevelModel, non_parametric_inference
    from daskglm.io.dataarray import open_run
    from daskglm.io.nifti_zarr_write import to_nifti_zarr
    from daskglm.studies.bids.first_level import first_level_from_bids
    from daskglm.studies.bids.study import fit_bids
    from daskglm.studies.subjects import fit_subjects, open_subject


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'daskglm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
