"""Design matrices: load user-given ones, or build them with nilearn's builder."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from daskglm.errors import DesignError
from daskglm.io.remote import is_url, read_remote_bytes

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


def _load_table(obj, what: str, index: int) -> pd.DataFrame:
    if isinstance(obj, pd.DataFrame):
        return obj
    if is_url(obj):  # events/confounds on object storage: small, read by the client
        sep = "," if obj.lower().endswith(".csv") else "\t"
        return pd.read_csv(io.BytesIO(read_remote_bytes(obj)), sep=sep)
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if not path.exists():
            raise FileNotFoundError(f"The {what} file {str(path)!r} does not exist.")
        sep = "," if path.suffix.lower() == ".csv" else "\t"
        try:
            return pd.read_csv(path, sep=sep)
        except Exception as err:
            raise DesignError(f"Could not read the {what} file {str(path)!r}: {err}") from err
    raise TypeError(f"The {what} of run {index} must be a DataFrame or a path, got {type(obj).__name__}.")


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
    """One run's design with nilearn's ``make_first_level_design_matrix``."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    conf_matrix, conf_names = None, None
    if confounds is not None:
        if isinstance(confounds, (str, os.PathLike)):
            confounds = _load_table(confounds, "confounds", index)
        if isinstance(confounds, pd.DataFrame):
            conf_names = [str(c) for c in confounds.columns]
            conf_matrix = confounds.to_numpy(dtype=np.float64)
        else:
            conf_matrix = np.asarray(confounds, dtype=np.float64)
            if conf_matrix.ndim == 1:
                conf_matrix = conf_matrix[:, None]
            conf_names = [f"confound_{i}" for i in range(conf_matrix.shape[1])]
        if conf_matrix.shape[0] != n_scans:
            raise DesignError(  # nilearn's message first; checked before the events, as nilearn
                f"Rows in confounds does not match n_scans in run_img at index {index}. "
                f"The confounds of run {index} have {conf_matrix.shape[0]} rows "
                f"but the run has {n_scans} scans."
            )
    events_df = _load_table(events, "events", index) if events is not None else None
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


#: Longest plausible repetition time (s); longer ones are taken for milliseconds.
MAX_T_R = 100.0


def check_runs_and_t_r(sources, t_r, from_events: bool) -> None:
    """Check ``t_r`` and the runs' lengths before any design is built.

    nilearn's types and messages for ``t_r`` (``TypeError`` for a non-number,
    ``ValueError`` "'t_r' must be positive"); a ``t_r`` above
    :data:`MAX_T_R` seconds is refused when designs are built from events
    (it is almost surely in milliseconds); a run of fewer than 2 volumes is
    refused by name.

    Raises
    ------
    TypeError, DesignError
    """
    if t_r is not None:
        if isinstance(t_r, bool) or not isinstance(t_r, (int, float, np.integer, np.floating)):
            raise TypeError(f"'t_r' must be of type(s): 'float, int'.\nGot: '{t_r.__class__.__name__}'")
        if not np.isfinite(t_r):
            raise DesignError(f"'t_r' must be a finite number of seconds. Got {t_r} instead.")
        if t_r <= 0:
            raise DesignError(f"'t_r' must be positive. Got {t_r} instead.")
    for i, s in enumerate(sources):
        if s.n_scans < 2:
            raise DesignError(
                f"Run {i} ({s.name}) has {s.n_scans} volume(s); a GLM needs at least 2 scans per run "
                "(is it a 3D image or a single volume?)."
            )
    if from_events and t_r is not None and t_r > MAX_T_R:
        longest = max(s.n_scans for s in sources) * float(t_r)
        raise DesignError(
            f"t_r={t_r:g} s gives a run of {longest / 3600:.3g} hours; is it in milliseconds? "
            f"Give the repetition time in seconds (e.g. t_r={t_r / 1000:g} for "
            f"{max(s.n_scans for s in sources)} scans of {t_r:g} ms)."
        )


def _designs_from_events(sources, events, confounds, params: dict) -> list[pd.DataFrame]:
    n_runs = len(sources)
    t_r = params["t_r"]
    if events is None:
        raise ValueError("events or design matrices must be provided")
    if t_r is None:
        raise ValueError("t_r not given to FirstLevelModel object to compute design from events")
    if not isinstance(t_r, (int, float, np.number)) or not t_r > 0:
        raise ValueError(f"t_r must be a positive number of seconds, got {t_r!r}.")
    events_list = per_run(events, n_runs, "events")
    confounds_list = per_run(confounds, n_runs, "confounds") if confounds is not None else [None] * n_runs
    design_params = {name: params[name] for name in DESIGN_PARAMS}
    return [
        build_design(s.n_scans, ev, cf, index=i, **design_params)
        for i, (s, ev, cf) in enumerate(zip(sources, events_list, confounds_list))
    ]

