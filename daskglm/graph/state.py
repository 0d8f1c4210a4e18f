"""The fitted state: one run's fitted arrays, and everything a fitted model knows.

:class:`RunFit` holds one run's fitted dask arrays (from a fit, or read back
from a store).  :class:`FittedState` is the whole fit of a
:class:`~daskglm.FirstLevelModel`, frozen: fitting or opening a store makes a
new one, persisting returns a new one.  The model, the store and the
contrast graphs read it; nothing mutates it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import dask.array as da
import pandas as pd

from daskglm.graph.resources import persist
from daskglm.io.base import RunSource

__all__ = ["RunFit", "FittedState"]


@dataclass
class RunFit:
    """One run's fitted arrays (dask-backed; from a fit or from a store)."""

    beta: da.Array  # (p, V)
    dispersion: da.Array  # (V,)
    ar_coef: da.Array  # (order, V)
    cov_index: da.Array  # (V,) int
    cov_table: da.Array  # (n_tables, p, p)
    df_residuals: int
    n_scans: int
    columns: list
    #: "table" (AR(1) bins: cov_index into cov_table), "stack" (binned arN) or
    #: "exact": per-voxel Gram rebuilt from ar_coef and the design-only stack.
    cov_kind: str = "table"
    acf_before: da.Array | None = None  # (k, V) OLS residual autocorrelation, lags 1..k
    acf_after: da.Array | None = None  # (k, V) whitened residual autocorrelation
    signal_mean: da.Array | None = None  # (V,) time mean of the signal before scaling

    #: the dask-backed fields, persisted together
    LAZY_FIELDS = (
        "beta", "dispersion", "ar_coef", "cov_index", "cov_table", "acf_before", "acf_after",
        "signal_mean",
    )

    def arrays(self) -> dict[str, da.Array]:
        """The fit's dask arrays by name (optional ones only when present)."""
        return {k: getattr(self, k) for k in self.LAZY_FIELDS if getattr(self, k) is not None}

    def with_arrays(self, arrays: dict) -> RunFit:
        return dataclasses.replace(self, **arrays)


@dataclass(frozen=True)
class FittedState:
    """Everything a fitted model knows, immutable.

    Attributes
    ----------
    runs : tuple of RunFit
        One per run, in input order.
    designs : tuple of pandas.DataFrame
        The design matrix of each run.
    space : daskglm.space.base.ElementSpace
        Where the fit's values live (mask and affine, or mesh / brain-model
        geometry; smoothing; unmasking); in-mask values are flat in the
        mask's C order everywhere.
    sources : tuple of RunSource or None
        The runs as streamed; ``None`` for a fit opened from a store.
    masker : dask.delayed.Delayed or None
        The graph key of the space's stream masker (``space.stream_masker()``).
    persisted : bool
        Whether the runs' arrays are computed (in memory, on the cluster or in a store).
    run_keys : tuple of str or None
        The resume keys stored with a fit opened from a store.
    """

    runs: tuple[RunFit, ...]
    designs: tuple[pd.DataFrame, ...]
    space: Any
    sources: tuple[RunSource, ...] | None = None
    masker: Any = None
    persisted: bool = False
    run_keys: tuple[str, ...] | None = None

    @property
    def n_voxels(self) -> int:
        return self.space.n_elements

    def replace(self, **changes) -> FittedState:
        return dataclasses.replace(self, **changes)

    def persist(self) -> FittedState:
        """The same state with every run's arrays computed once and kept."""
        if self.persisted:
            return self
        (arrays,) = persist([run.arrays() for run in self.runs])
        runs = tuple(run.with_arrays(a) for run, a in zip(self.runs, arrays))
        return self.replace(runs=runs, persisted=True)
