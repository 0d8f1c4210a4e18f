"""The trials of a beta series: events tables -> one LSA regressor per trial, and its checks.

Each run's events get one unique ``trial_type`` per trial (:func:`lsa_events`),
so nilearn's design builder gives the run's LSA design; the trial columns
are then found back by name (:func:`trial_columns`).  The LSS designs of
:mod:`daskglm.kernels.single_trial` are maps of that design.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from daskglm.glm.design import build_design, per_run
from daskglm.glm.tables import read_delimited, read_table_bytes
from daskglm.kernels.single_trial import TrialModels, fitted_trial_models

__all__ = ["TRIAL_PREFIX", "trials_table", "lsa_events", "trial_columns", "uses_orthogonalized_basis",
           "basis_models"]

#: Design column name of trial ``i`` of a run: ``f"{TRIAL_PREFIX}{i:05d}"`` (+ nilearn's basis suffixes).
TRIAL_PREFIX = "daskglm_trial_"
_CONDITION_PREFIX = "daskglm_condition_"


def _events_frame(obj, run: int) -> pd.DataFrame:
    if isinstance(obj, pd.DataFrame):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return read_delimited(read_table_bytes(obj, "events"), obj)
    raise TypeError(f"The events of run {run} must be a DataFrame or a path, got {type(obj).__name__}.")


def trials_table(events, n_runs: int) -> list[pd.DataFrame]:
    """Each run's events, checked: they need ``onset``, ``duration`` and ``trial_type``.

    Parameters
    ----------
    events : DataFrame, path, or list of them (one per run)
    n_runs : int

    Returns
    -------
    list of pandas.DataFrame
        One per run, index reset, in the events' order.
    """
    if events is None:
        raise ValueError("BetaSeriesModel.fit needs events: one table (onset, duration, trial_type) per run.")
    frames = []
    for run, obj in enumerate(per_run(events, n_runs, "events")):
        frame = _events_frame(obj, run).reset_index(drop=True)
        missing = [c for c in ("onset", "duration", "trial_type") if c not in frame.columns]
        if missing:
            raise ValueError(
                f"The events of run {run} have no {', '.join(missing)} column; single-trial betas need "
                f"onset, duration and trial_type (the condition of each trial). Columns: {list(frame.columns)}."
            )
        if len(frame) == 0:
            raise ValueError(f"The events of run {run} hold no trial.")
        if frame["trial_type"].isna().any():
            raise ValueError(f"The events of run {run} have trials without a trial_type.")
        frames.append(frame)
    return frames


def lsa_events(frame: pd.DataFrame) -> pd.DataFrame:
    """The run's events with one ``trial_type`` per trial (nilearn's LSA recipe, our column names)."""
    lsa = frame.copy()
    lsa["trial_type"] = [f"{TRIAL_PREFIX}{i:05d}" for i in range(len(frame))]
    return lsa


def trial_columns(columns: list, frame: pd.DataFrame, design: np.ndarray, run: int, run_span: float,
                  hrf_model="glover", censored: bool = False):
    """The LSA design columns of each trial, and the nuisance columns.

    Parameters
    ----------
    columns : list of str
        The LSA design's column names.
    frame : DataFrame
        The run's events (as given).
    design : ndarray (n, P)
        The LSA design (after censoring).
    run : int
    run_span : float
        Seconds covered by the run's scans.
    hrf_model : str, callable, list or None, default='glover'
        The model's ``hrf_model`` (for the error message).
    censored : bool, default=False
        Whether a sample mask removed scans of the run (for the error message).

    Returns
    -------
    trials : ndarray (n_trials, k) of int
        Each trial's columns, its main regressor first.
    nuisance : ndarray of int

    Raises
    ------
    ValueError
        If a trial has no regressor in the kept scans, naming why (an onset outside the run, a zero
        modulation, no scan covered with ``hrf_model=None``, censored scans).
    """
    names = [f"{TRIAL_PREFIX}{i:05d}" for i in range(len(frame))]
    per_trial = [_basis_columns(columns, name) for name in names]
    peaks = np.array([np.abs(design[:, own[0]]).max() if own else 0.0 for own in per_trial])
    for i, own in enumerate(per_trial):
        onset = float(frame["onset"].iloc[i])
        if not own or onset >= run_span or not peaks[i] > 1e-6 * peaks.max():
            outside = not 0.0 <= onset < run_span
            raise ValueError(_empty_trial_message(frame.iloc[i], i, run, run_span, outside, hrf_model, censored))
    if len({len(c) for c in per_trial}) != 1:
        raise ValueError(f"The trials of run {run} have different numbers of HRF basis columns.")
    used = {j for c in per_trial for j in c}
    nuisance = np.array([j for j in range(len(columns)) if j not in used], dtype=int)
    return np.array(per_trial, dtype=int), nuisance


def _empty_trial_message(row: pd.Series, trial: int, run: int, run_span: float, outside: bool, hrf_model,
                         censored: bool) -> str:
    """Why trial ``trial`` has no regressor in the run's kept scans: its onset, else the likely causes."""
    head = (f"Trial {trial} of run {run} ({row['trial_type']!r}, onset {row['onset']}, duration "
            f"{row['duration']}) has no regressor in the run's (kept) scans: ")
    if outside:
        return head + f"its onset lies outside the run (0 .. {run_span:g} s)."
    if "modulation" in row.index and row["modulation"] == 0:
        return head + "its modulation is 0."
    causes = []
    if hrf_model is None:
        causes.append("with hrf_model=None it covers no scan time (an event between two scans)")
    if censored:
        causes.append("the scans its response covers may all be removed by the sample mask")
    if not causes:
        causes.append("its response does not reach a scan time (its duration, or an onset at the run's end)")
    return head + f"its onset is in the run (0 .. {run_span:g} s), but " + "; or ".join(causes) + "."


def uses_orthogonalized_basis(hrf_model, n_basis: int) -> bool:
    """Whether a condition's regressors are not the sum of its trials' (nilearn orthogonalizes HRF derivatives)."""
    return n_basis > 1 and hrf_model != "fir"


def _basis_columns(columns: list, name: str) -> list[int]:
    """The design columns of ``name``: ``name`` and nilearn's basis regressors ``name_<suffix>``.

    ``name`` is one of our fixed-width labels (a trial's, :data:`TRIAL_PREFIX`, or a condition's,
    ``_CONDITION_PREFIX``), never a user's condition name: ``go`` would also take the columns of ``go_left``.
    """
    return [j for j, c in enumerate(columns) if c == name or str(c).startswith(name + "_")]


def basis_models(frame: pd.DataFrame, confounds, n_scans: int, design_params: dict, run: int,
                 trial_cols: np.ndarray, nuisance: np.ndarray, method: str) -> TrialModels:
    """LSS models for an HRF with derivatives, mapped from nilearn's own per-trial designs.

    nilearn orthogonalizes each condition's derivative regressors against its
    main one, so a condition's columns are not the sums of its trials'; they
    still lie in the span of the trials' LSA columns, and each trial's model
    is an exact map of the LSA design (:func:`fitted_trial_models`).  The
    designs are built once here (design only, no data).
    """
    def design(events):
        return build_design(n_scans, events, confounds, index=run, **design_params)

    X = design(lsa_events(frame)).to_numpy(dtype=np.float64)
    collapse = method == "lss1"
    # internal labels: a condition's name never meets another's columns, or the target's, or a confound's
    codes = np.zeros(len(frame), dtype=int) if collapse else pd.factorize(frame["trial_type"])[0]
    labels = pd.Series([f"{_CONDITION_PREFIX}{c:05d}" for c in codes])
    group_names = list(pd.unique(labels))
    condition_design = design(frame.assign(trial_type=labels.to_numpy()))
    cond_columns = list(condition_design.columns)
    group_designs = [condition_design.to_numpy()[:, _basis_columns(cond_columns, g)] for g in group_names]
    members = [np.flatnonzero(labels.to_numpy() == g) for g in group_names]
    designs, targets = [], []
    for i in range(len(frame)):
        events = frame.assign(trial_type=labels.to_numpy())
        events.loc[i, "trial_type"] = f"{TRIAL_PREFIX}target"
        d = design(events)
        designs.append(d.to_numpy())
        targets.append(list(d.columns).index(f"{TRIAL_PREFIX}target"))
    return fitted_trial_models(X, trial_cols, nuisance, group_designs, members, designs, targets)
