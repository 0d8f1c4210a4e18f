"""Small generated event-related runs for the beta-series tests."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm.data.volumes import ar1_noise, centred_affine, ellipsoid

SHAPE = (10, 12, 10)
T_R = 2.0
N_SCANS = 110


def make_run(seed: int, n_trials: int = 12, n_scans: int = N_SCANS, conditions=("face", "house"),
             dtype=np.float64):
    """A 4D image with AR(1) noise and trial responses, its events and its mask."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    rng = np.random.default_rng(seed)
    span = n_scans * T_R
    onsets = np.sort(rng.uniform(4, span - 24, n_trials)).round(2)
    events = pd.DataFrame({
        "onset": onsets, "duration": 1.0,
        "trial_type": np.array(conditions)[rng.integers(0, len(conditions), n_trials)],
    })
    lsa = events.assign(trial_type=[f"t{i}" for i in range(n_trials)])
    X = make_first_level_design_matrix(np.arange(n_scans) * T_R, lsa, hrf_model="glover").to_numpy()
    mask = ellipsoid(SHAPE, (0.95, 0.95, 0.95), (0.0, 0.0, 0.0))
    n_vox = int(mask.sum())
    amplitudes = rng.normal(0, 2.0, (X.shape[1], n_vox))
    amplitudes[-1] = 0.0
    noise = ar1_noise(rng, (n_vox, n_scans), 1, 0.3).T * 1.5
    signal = 200 + 40 * rng.random(n_vox) + X @ amplitudes + noise
    data = np.zeros(SHAPE + (n_scans,), dtype=dtype)
    data[mask] = signal.T
    affine = centred_affine(SHAPE, 3.0)
    return nib.Nifti1Image(data, affine), events, nib.Nifti1Image(mask.astype(np.uint8), affine)


@pytest.fixture(scope="session")
def beta_runs():
    """Two runs (images, events, the shared mask)."""
    img1, ev1, mask = make_run(1)
    img2, ev2, _ = make_run(2, n_trials=10)
    return {"imgs": [img1, img2], "events": [ev1, ev2], "mask": mask}
