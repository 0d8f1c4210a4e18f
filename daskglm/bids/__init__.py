"""BIDS studies: nilearn's ``first_level_from_bids`` with daskglm models, whole studies in one graph.

- :mod:`~daskglm.bids.layout`: local datasets, and local views of datasets on object storage;
- :mod:`~daskglm.bids.first_level`: :func:`first_level_from_bids` (sample masks kept);
- :mod:`~daskglm.bids.study`: :func:`fit_bids`, every subject into one study store;
- :mod:`~daskglm.bids.derivatives`: BIDS derivatives out, named as nilearn's ``save_glm_to_bids``;
- :mod:`~daskglm.bids.simulate`: a small BIDS + fMRIPrep-like study with known activations.

The submodules are imported on use (they pull in nilearn's BIDS tools).
"""

from __future__ import annotations

__all__ = ["first_level_from_bids", "fit_bids", "save_bids_derivatives", "make_bids_dataset"]


def __getattr__(name: str):
    import importlib

    where = {"first_level_from_bids": ".first_level", "fit_bids": ".study",
             "save_bids_derivatives": ".derivatives", "make_bids_dataset": ".simulate"}
    if name not in where:
        raise AttributeError(f"module 'daskglm.bids' has no attribute {name!r}")
    return getattr(importlib.import_module(where[name], __name__), name)
