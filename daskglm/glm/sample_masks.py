"""``sample_masks`` (censoring, scrubbing) as nilearn's ``FirstLevelModel.fit`` takes them.

Per run, a sample mask lists the scans to keep: an array of indices or a
boolean mask (``True`` = keep).  nilearn restricts both the design
(``design.iloc[sample_mask]``) and the data (``masker.transform(run,
sample_mask=sample_mask)``) to those scans and fits the GLM, AR model
included, on the kept sequence as if it were contiguous.  daskglm does the
same while streaming (:class:`daskglm.io.views.CensoredRunSource`).

Divergence: the kept indices must be strictly increasing (nilearn would also
accept a reordering or repetition of scans, which no censoring produces).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from daskglm.errors import SampleMaskError

__all__ = ["check_sample_masks", "censor_design", "read_sample_mask", "drop_initial"]


def _as_indices(mask, run: int, n_runs: int, n_scans: int) -> np.ndarray:
    values = np.asarray(mask)
    if values.ndim != 1:
        raise SampleMaskError(
            f"sample_mask {run + 1} of {n_runs} must be 1-D (indices or booleans), got shape {values.shape}."
        )
    if len(values) and all(type(v) is bool or type(v) is np.bool_ for v in mask):
        if len(values) != n_scans:
            raise SampleMaskError(
                f"sample_mask {run + 1} of {n_runs} is a boolean mask of {len(values)} values, "
                f"but the run has {n_scans} timepoints."
            )
        values = np.flatnonzero(values)
    elif values.dtype.kind not in "iu" and len(values):
        raise SampleMaskError(
            f"sample_mask {run + 1} of {n_runs} must hold integer indices or booleans, "
            f"got dtype {values.dtype}."
        )
    values = values.astype(np.int64)
    if len(values) and values.min() < 0:
        raise SampleMaskError("sample_mask should not contain negative values.")
    if len(values) > n_scans:
        raise SampleMaskError(
            f"sample_mask {run + 1} of {n_runs} is has more timepoints than the current run ;"
            f"sample_mask contains {len(values)} index but the run has {n_scans} timepoints."
        )
    invalid = values[values >= n_scans]
    if invalid.size:
        raise SampleMaskError(
            f"sample_mask {run + 1} of {n_runs} contains invalid index {invalid}. "
            f"The signal contains {n_scans} time points."
        )
    if np.any(np.diff(values) <= 0):
        raise SampleMaskError(
            f"sample_mask {run + 1} of {n_runs} must list the kept scans in increasing order "
            "without repetition (daskglm streams runs front to back)."
        )
    if len(values) == 0:
        raise SampleMaskError(f"sample_mask {run + 1} of {n_runs} keeps no scan.")
    return values


def check_sample_masks(sample_masks, n_scans: list[int]) -> list[np.ndarray | None] | None:
    """nilearn's ``check_run_sample_masks`` plus the range checks of its masker.

    Parameters
    ----------
    sample_masks : None, array, or list/tuple of arrays (one per run)
    n_scans : list of int
        Scans of each run.

    Returns
    -------
    list of ndarray of int64, or None
        Strictly increasing kept indices per run; ``None`` if no censoring.
        A run whose mask keeps every scan gets ``None``.

    Raises
    ------
    TypeError
        Not a list, tuple or array (nilearn's message).
    SampleMaskError
        Wrong count (nilearn's message), negative or out-of-range indices,
        a boolean mask of the wrong length, unsorted or repeated indices.
    """
    if sample_masks is None:
        return None
    if isinstance(sample_masks, bool) or not isinstance(sample_masks, (list, tuple, np.ndarray)):
        raise TypeError(
            "'sample_masks' must be of type(s): '<class 'list'>, <class 'tuple'>, "
            f"<class 'numpy.ndarray'>'.\nGot: '{sample_masks.__class__.__name__}'"
        )
    masks = (sample_masks,) if isinstance(sample_masks, np.ndarray) else tuple(sample_masks)
    n_runs = len(n_scans)
    if len(masks) != n_runs:
        raise SampleMaskError(
            f"Number of sample_mask ({len(masks)}) not matching number of runs ({n_runs})."
        )
    checked: list[np.ndarray | None] = []
    for i, (mask, n) in enumerate(zip(masks, n_scans)):
        kept = _as_indices(mask, i, n_runs, n)
        checked.append(None if len(kept) == n else kept)
    return checked


def censor_design(design: pd.DataFrame, kept: np.ndarray | None) -> pd.DataFrame:
    """The design rows of the kept scans (nilearn's ``design.iloc[sample_mask]``)."""
    return design if kept is None else design.iloc[kept, :]


def read_sample_mask(path: str | os.PathLike, n_scans: int | None = None) -> np.ndarray:
    """A sample mask from a text file: kept indices, or one 0/1 (or true/false) per scan.

    Values may be separated by newlines, spaces, commas or tabs.  A file of
    only 0s and 1s whose length equals ``n_scans`` is read as booleans
    (otherwise as indices).

    Returns
    -------
    ndarray
        Integer indices, or booleans.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"The sample mask file {str(path)!r} does not exist.")
    tokens = path.read_text().replace(",", " ").split()
    lowered = [t.lower() for t in tokens]
    if lowered and set(lowered) <= {"true", "false"}:
        return np.array([t == "true" for t in lowered], dtype=bool)
    try:
        values = np.array([int(float(t)) if float(t).is_integer() else float(t) for t in tokens])
    except ValueError as err:
        raise SampleMaskError(f"The sample mask file {str(path)!r} holds a non-number: {err}") from err
    if values.dtype.kind == "f":
        raise SampleMaskError(f"The sample mask file {str(path)!r} holds non-integer values.")
    if n_scans is not None and len(values) == n_scans and set(np.unique(values)) <= {0, 1}:
        return values.astype(bool)
    return values.astype(np.int64)


def drop_initial(n_drop: int, n_scans: int, kept=None) -> np.ndarray:
    """Kept indices without the first ``n_drop`` scans (non-steady-state volumes)."""
    if isinstance(n_drop, bool) or not isinstance(n_drop, (int, np.integer)) or n_drop < 0:
        raise SampleMaskError(f"The number of initial scans to drop must be >= 0, got {n_drop!r}.")
    if kept is None:
        kept = np.arange(n_scans)
    else:
        kept = np.asarray(kept)
        kept = np.flatnonzero(kept) if kept.dtype == bool else kept.astype(np.int64)
    return kept[kept >= n_drop]
