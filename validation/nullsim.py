"""Null and power simulations for the whitening modes (library for ``whitening_study.py``).

Voxels are simulated directly as arrays (time x voxels) and fitted with the
same kernels that :class:`daskglm.FirstLevelModel` maps over voxel blocks
(:func:`daskglm.kernels.fit.fit_block` and the contrast kernels), in batches,
so hundreds of thousands of tests per setting fit in memory.  nilearn is run
as-is (``nilearn.glm.first_level.run_glm`` + ``nilearn.glm.contrasts.compute_contrast``).

False-positive rate: every voxel gives two one-sided tests (positive and
negative tail of the t statistic of the task regressor), both valid under the
null; FPR(alpha) is the fraction of one-sided p values below alpha.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats as sps
from scipy.signal import lfilter

from daskglm.kernels.contrast import contrast_block, stack_contrast_block
from daskglm.kernels.fit import FitOptions, fit_block
from daskglm.kernels.glm import DesignTables
from daskglm.kernels.gram import GramTables, binned_gram_inverses
from daskglm.kernels.sufficient_stats import chunk_stats, stacked_design

__all__ = ["Setting", "make_design", "simulate_noise", "fit_pvalues", "nilearn_pvalues", "run_setting"]

T_R = 2.0


@dataclass
class Setting:
    """One simulation cell.

    ``ar`` is a tuple of AR coefficients, or ``("uniform", lo, hi)`` for
    AR(1) with rho drawn per voxel from U(lo, hi).
    """

    name: str
    n_scans: int
    design: str
    ar: tuple
    n_voxels: int
    amplitude: float = 0.0  # task effect in units of the innovation sd

    @property
    def order(self) -> int:
        return 1 if self.ar[0] == "uniform" else len(self.ar)


def make_design(n_scans: int, kind: str, seed: int = 0) -> tuple[np.ndarray, int]:
    """nilearn design (Glover HRF, cosine drift 0.01 Hz); returns ``(X, task column)``.

    ``kind``: ``"block"`` (20 s on / 20 s off) or ``"event"`` (two conditions,
    1 s events, jittered ISI 3-7 s).
    """
    from nilearn.glm.first_level import make_first_level_design_matrix

    frame_times = np.arange(n_scans) * T_R
    total = n_scans * T_R
    if kind == "block":
        onsets = np.arange(10.0, total - 20.0, 40.0)
        events = pd.DataFrame({"onset": onsets, "duration": 20.0, "trial_type": "task"})
    elif kind == "event":
        rng = np.random.default_rng(seed)
        onsets, t = [], 6.0
        while t < total - 10:
            onsets.append(t)
            t += rng.uniform(3.0, 7.0)
        types = np.where(rng.random(len(onsets)) < 0.5, "task", "other")
        events = pd.DataFrame({"onset": onsets, "duration": 1.0, "trial_type": types})
    else:
        raise ValueError(kind)
    dm = make_first_level_design_matrix(
        frame_times, events, hrf_model="glover", drift_model="cosine", high_pass=0.01
    )
    return dm.to_numpy(), list(dm.columns).index("task")


def simulate_noise(setting: Setting, n_voxels: int, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR noise (n_scans, n_voxels) with unit innovation variance."""
    n, burn = setting.n_scans, 300
    u = rng.standard_normal((n + burn, n_voxels))
    if setting.ar[0] == "uniform":
        rho = rng.uniform(setting.ar[1], setting.ar[2], n_voxels)
        e = np.empty_like(u)
        e[0] = u[0]
        for t in range(1, n + burn):
            e[t] = rho * e[t - 1] + u[t]
        return e[burn:]
    return lfilter([1.0], np.r_[1.0, -np.asarray(setting.ar, float)], u, axis=0)[burn:]


def fit_pvalues(Y: np.ndarray, X: np.ndarray, column: int, noise_model: str, whitening: str) -> np.ndarray:
    """One-sided (positive-tail) p values of the task t contrast with daskglm's kernels."""
    options = FitOptions(noise_model, False, whitening=whitening)
    n, p = X.shape
    stats = chunk_stats(Y, 0, n, stacked_design(X, options.n_lags), options.n_lags)
    tables = DesignTables(X, options.n_lags)
    if options.uses_stack:
        table = GramTables(X, options.ar_order, options.exact)
    else:
        table = binned_gram_inverses(X)
    packed = fit_block(stats, tables, table, options)
    parts = options.layout(p).unpack(packed)
    con = np.zeros(p)
    con[column] = 1.0
    df = n - tables.rank
    if options.uses_stack:
        effect, var = stack_contrast_block(
            parts["beta"], parts["dispersion"], parts["ar_coef"], table.gram_stack, con, "t",
            options.exact, df if options.exact else None,
        )
    else:
        effect, var = contrast_block(
            parts["beta"], parts["dispersion"], parts["cov_index"].astype(np.intp), table, con, "t"
        )
    return sps.t.sf(effect / np.sqrt(np.maximum(var, 1e-50)), df)


def nilearn_pvalues(Y: np.ndarray, X: np.ndarray, column: int, noise_model: str) -> np.ndarray:
    """The same with nilearn 0.14.1's ``run_glm`` and ``compute_contrast``."""
    from nilearn.glm.contrasts import compute_contrast
    from nilearn.glm.first_level import run_glm

    labels, results = run_glm(Y, X, noise_model=noise_model, random_state=0)
    con = np.zeros(X.shape[1])
    con[column] = 1.0
    return compute_contrast(labels, results, con, "t").p_value()


def run_setting(setting: Setting, methods: dict, batch: int = 25_000, seed: int = 0) -> dict:
    """FPR (or power) at 0.001 and 0.01 of each method on one setting.

    ``methods`` maps a label to ``(kind, noise_model, whitening)`` with kind
    ``"daskglm"`` or ``"nilearn"``.  Returns ``{label: {"p<0.001": .., "p<0.01": ..}}``.
    """
    rng = np.random.default_rng(seed)
    X, col = make_design(setting.n_scans, setting.design, seed)
    counts = {label: np.zeros(2) for label in methods}
    n_tests = 0
    done = 0
    while done < setting.n_voxels:
        m = min(batch, setting.n_voxels - done)
        Y = simulate_noise(setting, m, rng) + 100.0
        if setting.amplitude:
            Y = Y + setting.amplitude * X[:, [col]]
        for label, (kind, noise_model, whitening) in methods.items():
            if kind == "nilearn":
                pv = nilearn_pvalues(Y, X, col, noise_model)
            else:
                pv = fit_pvalues(Y, X, col, noise_model, whitening)
            for i, alpha in enumerate((0.001, 0.01)):
                if setting.amplitude:
                    counts[label][i] += np.sum(pv < alpha)
                else:
                    counts[label][i] += np.sum(pv < alpha) + np.sum(pv > 1 - alpha)
        n_tests += m if setting.amplitude else 2 * m
        done += m
    return {
        label: {"p<0.001": c[0] / n_tests, "p<0.01": c[1] / n_tests, "n_tests": n_tests}
        for label, c in counts.items()
    }
