"""Figures of :mod:`daskglm.reporting.plotting` checked against the data they draw."""

from __future__ import annotations

import numpy as np

from daskglm.reporting.plotting import AR_BIN, plot_ar_coefficients


def test_ar1_histogram_has_one_bar_per_value_of_the_001_grid():
    """nilearn's AR(1) labels are multiples of 0.01: one bar per grid value, its height that value's count."""
    rng = np.random.default_rng(0)
    runs = [np.trunc(rng.normal(mean, 0.1, 3000) * 100) / 100 for mean in (0.2, 0.35)]
    ax = plot_ar_coefficients(runs).axes[0]
    for rho, bars in zip(runs, ax.containers):
        grid = np.round(rho / AR_BIN).astype(int)
        values, counts = np.unique(grid, return_counts=True)
        centres = np.array([b.get_x() + b.get_width() / 2 for b in bars])
        heights = np.array([b.get_height() for b in bars])
        np.testing.assert_allclose([b.get_width() for b in bars], AR_BIN)
        np.testing.assert_allclose(centres / AR_BIN, np.round(centres / AR_BIN), atol=1e-6)  # centred on the grid
        drawn = dict(zip(np.round(centres / AR_BIN).astype(int), heights))
        assert {v: drawn[v] for v in values} == dict(zip(values, counts))  # no spike: each bar holds one value
        assert sum(heights) == rho.size  # no value falls between bars
