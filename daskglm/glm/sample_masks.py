"""``sample_masks`` (censoring, scrubbing) as nilearn's ``FirstLevelModel.fit`` takes them.

Per run, a sample mask lists the scans to keep: an array of indices or a
boolean mask (``True`` = keep).  nilearn restricts both the design
(``design.iloc[sample_mask]``) and the data (``masker.transform(run,
sample_mask=sample_mask)``) to those scans and fits the GLM, AR model
included, on the kept sequence as if it were contiguous.  daskglm does the
same while streaming (:class:`daskglm.io.views.CensoredRunSource`).

Divergence: the kept indices must be strictly increasing (nilearn would also
accept a reordering or repetition of scans, which no censoring produces).

Sample masks travel with the confounds they come from: fMRIPrep's
``load_confounds`` returns both, and :func:`daskglm.first_level_from_bids`
returns each run's confounds DataFrame with its sample mask in
``DataFrame.attrs["sample_mask"]`` (:func:`with_sample_mask`);
``FirstLevelModel.fit`` reads them back (:func:`sample_masks_from_confounds`)
when it is given no ``sample_masks``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from daskglm.errors import SampleMaskError

__all__ = ["check_sample_masks", "censor_design", "read_sample_mask", "drop_initial", "SAMPLE_MASK_ATTR",
           "with_sample_mask", "sample_masks_from_confounds"]

#: The ``DataFrame.attrs`` key of a confounds table's sample mask.
SAMPLE_MASK_ATTR = "sample_mask"
#: ``attrs`` key of the number of rows the sample mask was made for (a trimmed table is caught)
SAMPLE_MASK_ROWS_ATTR = "sample_mask_rows"


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


def with_sample_mask(confounds: pd.DataFrame, sample_mask) -> pd.DataFrame:
    """Attach a run's sample mask to its confounds table (``confounds.attrs["sample_mask"]``), in place.

    Parameters
    ----------
    confounds : pandas.DataFrame
        One run's confounds (one row per scan).
    sample_mask : array of int, or None
        The kept scans, as ``load_confounds`` returns them; None (nothing
        dropped) removes the entry.

    Returns
    -------
    pandas.DataFrame
        ``confounds`` itself.  The mask is stored as a tuple of ints: pandas
        compares ``attrs`` when it concatenates frames (an array there would
        make ``pd.concat`` of two runs' confounds raise), and ``to_parquet``
        writes them as JSON.
    """
    if sample_mask is None:
        confounds.attrs.pop(SAMPLE_MASK_ATTR, None)
        confounds.attrs.pop(SAMPLE_MASK_ROWS_ATTR, None)
    else:
        confounds.attrs[SAMPLE_MASK_ATTR] = tuple(int(i) for i in np.asarray(sample_mask).ravel())
        confounds.attrs[SAMPLE_MASK_ROWS_ATTR] = len(confounds)
    return confounds


def sample_masks_from_confounds(confounds, n_scans: list[int] | None = None) -> list[np.ndarray | None] | None:
    """The sample masks that confounds tables carry (``attrs["sample_mask"]``), for ``fit``.

    Parameters
    ----------
    confounds : DataFrame, array, path, None, or a list of them
        ``FirstLevelModel.fit``'s ``confounds`` (one entry per run).
    n_scans : list of int, optional
        The runs' scan counts: a run whose confounds carry no mask, next to
        runs that do, keeps all its scans (``arange(n_scans)``).

    Returns
    -------
    list of (ndarray of int64 or None), or None
        Per run, the mask its DataFrame carries.  A run whose DataFrame
        carries none, next to runs that do, keeps all its rows' scans
        (``arange(len(frame))``: nilearn accepts no ``None`` among sample
        masks); other runs without one give None.  None overall when no run
        carries a mask (nothing is censored).

    Raises
    ------
    SampleMaskError
        A table whose rows are no longer the ones its mask was made for
        (pandas keeps ``attrs`` through slicing and ``concat``): a stale list
        of scans would censor the wrong ones.
    """
    runs = list(confounds) if isinstance(confounds, (list, tuple)) else [confounds]
    masks = [run.attrs.get(SAMPLE_MASK_ATTR) if isinstance(run, pd.DataFrame) else None for run in runs]
    for i, (mask, run) in enumerate(zip(masks, runs)):
        rows = run.attrs.get(SAMPLE_MASK_ROWS_ATTR) if mask is not None else None
        if rows is not None and rows != len(run):
            raise SampleMaskError(
                f"The confounds table of run {i + 1} carries a sample mask made for {rows} scans but has "
                f"{len(run)} rows (sliced or concatenated after first_level_from_bids?); pass "
                "sample_masks= explicitly, or drop the carried mask with "
                "daskglm.glm.sample_masks.with_sample_mask(table, None)."
            )
    if all(mask is None for mask in masks):
        return None
    def every_scan(i, run):
        if n_scans is not None and i < len(n_scans):
            return np.arange(n_scans[i])
        return np.arange(len(run)) if isinstance(run, pd.DataFrame) else None

    return [np.asarray(mask, dtype=np.int64) if mask is not None else every_scan(i, run)
            for i, (mask, run) in enumerate(zip(masks, runs))]
