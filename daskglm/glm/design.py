"""Design matrices: load user-given ones, or build them with nilearn's builder."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from daskglm.errors import DesignError
from daskglm.glm.confounds import confounds_columns
from daskglm.glm.tables import read_delimited, read_table_bytes, table_name
from daskglm.io.timing import check_t_r, check_t_r_in_seconds

__all__ = [
    "DesignError", "load_design", "build_design", "run_designs", "frame_times", "check_design",
    "per_run", "check_runs_and_t_r",
]

#: The model parameters that shape a design built from events.
DESIGN_PARAMS = (
    "t_r", "slice_time_ref", "hrf_model", "drift_model", "high_pass", "drift_order", "fir_delays",
    "min_onset",
)


def load_design(obj, index: int = 0) -> pd.DataFrame:
    """A design matrix as a DataFrame of float64.

    Accepts a DataFrame, a 2-D array, or a path to ``.npz`` (key ``X``),
    ``.npy``, ``.csv`` or ``.tsv``.  Arrays keep integer column names, as
    ``pd.DataFrame(array)`` would.

    Parameters
    ----------
    obj : DataFrame, array-like, str or path
    index : int
        Run number, for messages.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    TypeError
        An object that is none of the accepted kinds.
    DesignError
        An unreadable file, or a design that fails :func:`check_design`.
    """
    if isinstance(obj, pd.DataFrame):
        df = obj
    elif isinstance(obj, (str, os.PathLike)):
        df = _read_design_file(Path(obj), index)
    elif isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        try:
            arr = np.asarray(obj)
        except (TypeError, ValueError) as err:
            raise DesignError(f"Design matrix {index} cannot be read as an array: {err}") from err
        if arr.ndim != 2:
            raise DesignError(f"Design matrix {index} must be 2-D, got shape {arr.shape}.")
        df = pd.DataFrame(arr)
    else:
        raise TypeError(
            f"Design matrix {index} must be a DataFrame, an array or a path to "
            f".npz/.csv/.tsv, got {type(obj).__name__}."
        )
    return check_design(df, index)


def _read_design_file(path: Path, index: int) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"Design matrix file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path) as data:
                if "X" not in data:
                    raise DesignError(
                        f"Design file {str(path)!r} has no array 'X' (keys: {list(data.keys())})."
                    )
                return pd.DataFrame(data["X"])
        if suffix == ".npy":
            return pd.DataFrame(np.load(path))
        if suffix in (".csv", ".tsv", ".txt"):
            # sniffing (sep=None) mistakes a letter for the delimiter of a one-column file
            sep = {".tsv": "\t", ".csv": ","}.get(suffix)
            df = pd.read_csv(path, sep=sep, engine="python")
            if df.columns[0].startswith("Unnamed") or df.columns[0] == "":
                df = df.set_index(df.columns[0])
            return df
    except DesignError:
        raise
    except Exception as err:
        raise DesignError(f"Could not read design matrix {str(path)!r}: {err}") from err
    raise DesignError(
        f"Design matrix file {str(path)!r} must be .npz (key 'X'), .npy, .csv or .tsv."
    )


def check_design(df: pd.DataFrame, index: int = 0) -> pd.DataFrame:
    """Validate a design matrix: 2-D, numeric, finite, at least one row and column.

    Parameters
    ----------
    df : pandas.DataFrame
    index : int
        Run number, for messages.

    Returns
    -------
    pandas.DataFrame
        The same design as float64 (columns and index kept).

    Raises
    ------
    TypeError
        If ``df`` is not a DataFrame.
    DesignError
        Empty, non-numeric or non-finite.

    Notes
    -----
    Duplicated or empty column names are kept, as nilearn keeps them: contrasts
    given as vectors or matrices work; a contrast expression naming a
    duplicated column is refused as ambiguous (:mod:`daskglm.glm.contrasts`).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"Design matrix {index} must be a pandas DataFrame, got {type(df).__name__}.")
    if df.shape[1] == 0 or df.shape[0] == 0:
        raise DesignError(f"Design matrix {index} is empty (shape {df.shape}).")
    try:
        values = df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DesignError(f"Design matrix {index} has non-numeric columns: {err}") from err
    bad = ~np.isfinite(values)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise DesignError(
            f"Design matrix {index} contains {bad.sum()} NaN or infinite values "
            f"(first at row {rows[0]}, column {str(df.columns[cols[0]])!r})."
        )
    return pd.DataFrame(values, columns=df.columns, index=df.index)


def frame_times(n_scans: int, t_r: float, slice_time_ref: float = 0.0) -> np.ndarray:
    """Acquisition times of the scans, as nilearn's ``FirstLevelModel``."""
    start = slice_time_ref * t_r
    end = (n_scans - 1 + slice_time_ref) * t_r
    return np.linspace(start, end, n_scans)


def _load_events(obj, index: int) -> pd.DataFrame:
    """A run's events: a DataFrame, or a TSV/CSV file at a path or URL (:mod:`daskglm.glm.tables`)."""
    if isinstance(obj, pd.DataFrame):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        data = read_table_bytes(obj, "events")
        try:
            return read_delimited(data, obj)
        except Exception as err:
            raise DesignError(f"Could not read the events file {table_name(obj)!r}: {err}") from err
    raise TypeError(f"The events of run {index} must be a DataFrame or a path, got {type(obj).__name__}.")


def build_design(
    n_scans: int,
    events,
    confounds,
    *,
    t_r: float,
    slice_time_ref: float,
    hrf_model,
    drift_model,
    high_pass,
    drift_order,
    fir_delays,
    min_onset,
    index: int = 0,
) -> pd.DataFrame:
    """One run's design with nilearn's ``make_first_level_design_matrix``.

    ``confounds`` (a table, an array or a file) become design columns with
    :func:`daskglm.glm.confounds.confounds_columns` (files read by
    :func:`~daskglm.glm.confounds.read_confounds`: TSV/CSV, ``rp_*.txt``,
    ``.par``, ``.1D``); ``events`` is a table or a TSV/CSV file.
    """
    from nilearn.glm.first_level import make_first_level_design_matrix

    conf_matrix, conf_names = None, None
    if confounds is not None:  # checked before the events, as nilearn
        conf_matrix, conf_names = confounds_columns(confounds, n_scans, index)
    events_df = _load_events(events, index) if events is not None else None
    if events_df is not None:
        missing = {"onset", "duration"} - set(events_df.columns)
        if missing:
            first = "onset" if "onset" in missing else "duration"
            raise DesignError(
                f"The provided events data has no {first} column. "
                f"The events of run {index} lack the column(s) {sorted(missing)}; "
                f"they have {list(events_df.columns)}."
            )
    design = make_first_level_design_matrix(
        frame_times(n_scans, t_r, slice_time_ref),
        events_df,
        hrf_model,
        drift_model,
        high_pass,
        drift_order,
        fir_delays,
        conf_matrix,
        conf_names,
        min_onset,
    )
    return check_design(design, index)


def per_run(obj, n_runs: int, what: str) -> list:
    """``obj`` as a list of one item per run (a single item is a one-run list)."""
    items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    if len(items) != n_runs:
        raise ValueError(  # nilearn's message first
            f"len(run_imgs) {n_runs} does not match len({what.replace(' ', '_')}) {len(items)}: "
            f"{len(items)} {what} given for {n_runs} run(s); give exactly one per run."
        )
    return items


def run_designs(sources, events, confounds, design_matrices, params: dict) -> list[pd.DataFrame]:
    """The design of every run, as ``FirstLevelModel.fit`` gets them.

    Parameters
    ----------
    sources : list of RunSource
        The runs (their scan counts and names are used).
    events, confounds, design_matrices
        ``fit``'s arguments: one per run, or a single one for a single run.
        Given design matrices win over events and confounds (with nilearn's warning).
    params : dict
        The model's design parameters (:data:`DESIGN_PARAMS`).

    Returns
    -------
    list of pandas.DataFrame
        One float64 design per run, with as many rows as the run has scans.
    """
    n_runs = len(sources)
    check_runs_and_t_r(sources, params.get("t_r"), from_events=design_matrices is None)
    if design_matrices is not None:
        if events is not None or confounds is not None:
            ignored = " and ".join(
                n for n, v in (("confounds", confounds), ("events", events)) if v is not None
            )
            warnings.warn(f"If design matrices are supplied, {ignored} will be ignored.",
                          UserWarning, stacklevel=3)
        items = per_run(design_matrices, n_runs, "design matrices")
        designs = [load_design(d, i) for i, d in enumerate(items)]
    else:
        designs = _designs_from_events(sources, events, confounds, params)
    for i, (s, d) in enumerate(zip(sources, designs)):
        if d.shape[0] != s.n_scans:
            raise DesignError(
                f"Design matrix {i} has {d.shape[0]} rows but run {i} ({s.name}) has "
                f"{s.n_scans} scans."
            )
        # n <= p is fitted as nilearn does (pseudo-inverse; no residual degrees of freedom)
    return designs


def check_runs_and_t_r(sources, t_r, from_events: bool) -> None:
    """Check ``t_r`` and the runs' lengths before any design is built.

    ``t_r`` by :func:`daskglm.io.timing.check_t_r` (nilearn's types and
    messages) and, when designs are built from events,
    :func:`daskglm.io.timing.check_t_r_in_seconds` (milliseconds refused); a
    run of fewer than 2 volumes is refused by name.

    Raises
    ------
    TypeError, DesignError
    """
    check_t_r(t_r)
    for i, s in enumerate(sources):
        if s.n_scans < 2:
            raise DesignError(
                f"Run {i} ({s.name}) has {s.n_scans} volume(s); a GLM needs at least 2 scans per run "
                "(is it a 3D image or a single volume?)."
            )
    if from_events and t_r is not None:
        check_t_r_in_seconds(t_r, max(s.n_scans for s in sources))


def _designs_from_events(sources, events, confounds, params: dict) -> list[pd.DataFrame]:
    n_runs = len(sources)
    t_r = params["t_r"]
    if events is None:
        raise ValueError("events or design matrices must be provided")
    if t_r is None:  # its value was checked by check_runs_and_t_r
        raise ValueError("t_r not given to FirstLevelModel object to compute design from events")
    events_list = per_run(events, n_runs, "events")
    confounds_list = per_run(confounds, n_runs, "confounds") if confounds is not None else [None] * n_runs
    design_params = {name: params[name] for name in DESIGN_PARAMS}
    return [
        build_design(s.n_scans, ev, cf, index=i, **design_params)
        for i, (s, ev, cf) in enumerate(zip(sources, events_list, confounds_list))
    ]

