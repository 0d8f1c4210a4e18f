"""BIDS studies: nilearn's ``first_level_from_bids`` with daskglm models, whole studies in one graph.

- :mod:`~daskglm.studies.bids.layout`: local datasets, and local views of datasets on object storage;
- :mod:`~daskglm.studies.bids.query`: one subject's runs (volume, fsaverage5 GIfTI, fsLR CIFTI),
  brain masks and confounds (with ``load_confounds``' sample masks);
- :mod:`~daskglm.studies.bids.first_level`: :func:`first_level_from_bids` (nilearn's steps, sample
  masks kept on the confounds);
- :mod:`~daskglm.studies.bids.study`: :func:`fit_bids`, every subject into one study store;
- :mod:`~daskglm.studies.bids.derivatives`: BIDS derivatives out, named as nilearn's ``save_glm_to_bids``.

The submodules are imported on use (they pull in nilearn's BIDS tools).
"""

from __future__ import annotations

__all__ = ["first_level_from_bids", "fit_bids", "save_bids_derivatives"]


def __getattr__(name: str):
    import importlib

    where = {"first_level_from_bids": ".first_level", "fit_bids": ".study",
             "save_bids_derivatives": ".derivatives"}
    if name not in where:
        raise AttributeError(f"module 'daskglm.studies.bids' has no attribute {name!r}")
    return getattr(importlib.import_module(where[name], __name__), name)
