"""``daskglm.open_model``: reopen a first-level fit or a beta series from its store (no refit)."""

from __future__ import annotations

from daskglm.betas.model import BetaSeriesModel
from daskglm.betas.store import is_beta_series
from daskglm.first_level.model import FirstLevelModel
from daskglm.first_level.model import open_model as open_first_level

__all__ = ["open_model"]


def open_model(store, storage_options: dict | None = None) -> FirstLevelModel | BetaSeriesModel:
    """Reopen a model written by ``to_zarr``: a :class:`~daskglm.FirstLevelModel` or a
    :class:`~daskglm.BetaSeriesModel`.

    Parameters
    ----------
    store : str or path or fsspec URL
    storage_options : dict, optional
        fsspec options (first-level stores; beta-series stores are local).

    Returns
    -------
    FirstLevelModel or BetaSeriesModel
    """
    if storage_options is None and is_beta_series(store):
        return BetaSeriesModel.from_store(store)
    return open_first_level(store, storage_options=storage_options)
