"""Simulated events and the task regressors they give: the one home of both simulators' event code.

- :func:`block_events`: FIAC's design (:func:`daskglm.data.fiac.make_fiac_like`):
  blocks of one condition, each announced by a short cue event, conditions
  in a fresh random order every cycle, jittered block spacing;
- :func:`spaced_events`: evenly spaced trials of conditions in random order
  (:func:`daskglm.data.bids.make_bids_dataset`);
- :func:`task_regressors`: nilearn's design columns of events at the scan
  onsets ``arange(n_scans) * t_r``, and :func:`response`, the signal of
  given amplitudes per condition.

The two designs draw from the generator in different orders, so each keeps
its own function: the datasets are the same, bit for bit, as before the
simulators shared this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["block_events", "spaced_events", "task_regressors", "response"]

#: The columns of an events table (BIDS ``*_events.tsv``).
EVENT_COLUMNS = ["onset", "duration", "trial_type"]


def block_events(n_scans: int, t_r: float, rng: np.random.Generator, conditions: Sequence[str],
                 cue: str = "FirstSt") -> pd.DataFrame:
    """Blocks of six sentences, conditions in shuffled order, FIAC-like timing.

    From 8 s to 20 s before the end of the run: a 2 s ``cue`` event, then at
    +3 s a 15 s block of the next condition; blocks start 22.5 s to 26.5 s
    apart (uniform jitter); each cycle takes the conditions in a new random
    order.

    Parameters
    ----------
    n_scans : int
    t_r : float
        Repetition time in seconds.
    rng : numpy.random.Generator
    conditions : sequence of str
    cue : str, default='FirstSt'
        The trial type of the event announcing each block (FIAC's first sentence).

    Returns
    -------
    pandas.DataFrame
        ``onset``, ``duration``, ``trial_type``.
    """
    rows = []
    t = 8.0
    total = n_scans * t_r - 20.0
    while t < total:
        for cond in rng.permutation(conditions):
            if t >= total:
                break
            rows.append((t, 2.0, cue))
            rows.append((t + 3.0, 15.0, str(cond)))
            t += 18.0 + 4.5 + rng.uniform(0, 4)
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def spaced_events(n_scans: int, t_r: float, rng: np.random.Generator,
                  conditions: Sequence[str]) -> pd.DataFrame:
    """2 s trials every 3.5 scans from scan 4 to 6 scans before the end, conditions balanced and shuffled.

    Parameters
    ----------
    n_scans : int
    t_r : float
        Repetition time in seconds.
    rng : numpy.random.Generator
    conditions : sequence of str
        Repeated in turn over the trials, then shuffled.

    Returns
    -------
    pandas.DataFrame
        ``onset`` (rounded to 10 ms), ``duration``, ``trial_type``.
    """
    onsets = np.arange(4 * t_r, (n_scans - 6) * t_r, 3.5 * t_r)
    kinds = np.resize(np.array(conditions), len(onsets))
    rng.shuffle(kinds)
    return pd.DataFrame({"onset": onsets.round(2), "duration": np.full(len(onsets), 2.0),
                         "trial_type": kinds})


def task_regressors(events: pd.DataFrame, n_scans: int, t_r: float, **design) -> pd.DataFrame:
    """nilearn's ``make_first_level_design_matrix`` of ``events`` at the scan onsets ``arange(n_scans) * t_r``.

    Parameters
    ----------
    events : pandas.DataFrame
    n_scans : int
    t_r : float
    **design
        Passed on (``hrf_model``, ``drift_model``, ``high_pass``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per scan.
    """
    from nilearn.glm.first_level import make_first_level_design_matrix

    return make_first_level_design_matrix(np.arange(n_scans) * t_r, events, **design)


def response(regressors: pd.DataFrame, amplitudes: Mapping[str, float]) -> np.ndarray:
    """The task signal: ``sum(amplitude * regressor)`` over the conditions of ``amplitudes``, ``(n_scans,)``."""
    return sum(a * regressors[c].to_numpy() for c, a in amplitudes.items())
