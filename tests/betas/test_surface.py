"""Beta series of SurfaceImage runs: SurfaceImage beta maps equal to nilearn's LSS loop on the surface."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from nilearn.datasets import load_fsaverage
from nilearn.glm.first_level import FirstLevelModel
from nilearn.surface import SurfaceImage

from daskglm import BetaSeriesModel
from tests.betas._recipes import lss_transformer

N_SCANS, T_R = 50, 2.0


def _values(img) -> np.ndarray:
    """(vertices, samples) of both hemispheres."""
    return np.concatenate([np.asarray(img.data.parts[p]).reshape(len(img.data.parts[p]), -1)
                           for p in img.mesh.parts])


def test_surface_beta_maps_equal_nilearns_loop():
    mesh = load_fsaverage("fsaverage5")["pial"]
    rng = np.random.default_rng(3)
    data = {}
    for part, m in mesh.parts.items():
        y = rng.standard_normal((N_SCANS, m.n_vertices))
        for t in range(1, N_SCANS):
            y[t] += 0.3 * y[t - 1]
        data[part] = (100 + 20 * rng.uniform(size=m.n_vertices) + y).T
    run = SurfaceImage(mesh=mesh, data=data)
    events = pd.DataFrame({"onset": [6.0, 20.0, 36.0, 50.0, 62.0, 74.0], "duration": 1.0,
                           "trial_type": ["a", "b", "a", "b", "a", "b"]})
    maps = BetaSeriesModel(t_r=T_R).fit(run, events).beta_maps()
    assert isinstance(maps["a"], SurfaceImage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for condition in ("a", "b"):
            rows = np.flatnonzero(events["trial_type"].to_numpy() == condition)
            ours = _values(maps[condition])
            for sample, i in list(enumerate(rows))[:1]:  # one trial per condition: nilearn's surface fits are slow
                lss, name = lss_transformer(events, i)
                ref = _values(FirstLevelModel(t_r=T_R).fit(run, lss).compute_contrast(name, output_type="effect_size"))
                np.testing.assert_allclose(ours[:, sample], ref[:, 0], rtol=1e-6, atol=1e-9 * np.abs(ref).max())
