"""The study path on the surface: ``first_level_from_bids(..., space_label="fsaverage5")``.

The dataset is nilearn 0.14.1's own BIDS test dataset
(``nilearn._utils.data_gen.create_fake_bids_dataset`` with ``n_vertices=10242``:
fMRIPrep-named ``hemi-L`` / ``hemi-R`` ``space-fsaverage5`` ``.func.gii`` runs),
whose runs are rewritten with a baseline, a task effect per vertex and noise
(nilearn's are zero-mean noise, which mean scaling cannot handle).  The models
daskglm returns, fitted, give ``SurfaceImage`` z maps equal to nilearn's on
>= 99.9 % of the vertices within 1e-3: with ``load_confounds``' confounds and
sample masks (which daskglm keeps on the confounds, ``attrs["sample_mask"]``; nilearn's models are
fitted with them passed explicitly), and without confounds (nilearn's models
as returned).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn._utils.data_gen import create_fake_bids_dataset
from nilearn.glm.first_level import FirstLevelModel as NilearnModel
from nilearn.glm.first_level import first_level_from_bids as nilearn_first_level_from_bids
from nilearn.glm.first_level import make_first_level_design_matrix
from nilearn.interfaces.fmriprep import load_confounds
from nilearn.surface import SurfaceImage

import daskglm
from daskglm.glm.sample_masks import sample_masks_from_confounds
from tests.conftest import quiet

N_VERTICES = 10242  # fsaverage5, per hemisphere
T_R = 1.5  # the dataset's RepetitionTime
MOTION = {"confounds_strategy": ("motion",), "confounds_motion": "basic"}
CONTRAST = "c0 - c1"



def _add_signal(run: Path, events: pd.DataFrame, rng: np.random.Generator) -> None:
    """Rewrite a ``.func.gii`` run (one time x vertex array) as 100 + task effects + noise."""
    gii = nib.load(run)
    (array,) = gii.darrays
    n_scans = array.data.shape[0]
    design = make_first_level_design_matrix(np.arange(n_scans) * T_R, events, drift_model=None)
    betas = rng.normal(0.0, 6.0, size=(2, N_VERTICES))
    data = 100.0 + design[["c0", "c1"]].to_numpy() @ betas + rng.normal(0.0, 1.0, (n_scans, N_VERTICES))
    array.data = data.astype(np.float32)
    nib.save(gii, run)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = create_fake_bids_dataset(base_dir=tmp_path_factory.mktemp("fsaverage5"), n_sub=2, n_ses=0,
                                    tasks=["main"], n_runs=[2], n_vertices=N_VERTICES)
    rng = np.random.default_rng(15)
    runs = sorted(root.glob("derivatives/sub-*/func/*_space-fsaverage5_bold.func.gii"))
    assert len(runs) == 8  # 2 subjects x 2 runs x 2 hemispheres
    for run in runs:
        sub, task, run_label = run.name.split("_")[:3]
        events = pd.read_csv(root / sub / "func" / f"{sub}_{task}_{run_label}_events.tsv", sep="\t")
        _add_signal(run, events, rng)
    return root


def _z(model, *args, **kwargs) -> np.ndarray:
    model.fit(*args, **kwargs)
    z = quiet(model.compute_contrast, CONTRAST)
    assert isinstance(z, SurfaceImage)
    return np.concatenate([np.asarray(z.data.parts[h]).ravel() for h in ("left", "right")])


def _agreement(ours: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of vertices within 1e-3 (NaN where both are NaN counts as equal)."""
    same = (np.abs(ours - ref) < 1e-3) | (np.isnan(ours) & np.isnan(ref))
    return float(same.mean())


def _left_runs(root: Path, sub: str) -> list[str]:
    return sorted(str(p) for p in root.glob(f"derivatives/sub-{sub}/func/*_hemi-L_space-fsaverage5_bold.func.gii"))


@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_fsaverage5_models_equal_nilearns_with_sample_masks(dataset, noise_model):
    kwargs = dict(space_label="fsaverage5", slice_time_ref=0.0, noise_model=noise_model, **MOTION)
    models, imgs, events, confounds = quiet(daskglm.first_level_from_bids, dataset, "main", **kwargs)
    assert [m.subject_label for m in models] == ["01", "02"]
    for model, runs, run_events, run_confounds in zip(models, imgs, events, confounds):
        assert isinstance(model, daskglm.FirstLevelModel) and model.noise_model == noise_model
        assert len(runs) == len(run_events) == len(run_confounds) == 2
        assert all(isinstance(img, SurfaceImage) and img.shape == (2 * N_VERTICES, 30) for img in runs)
        # one load_confounds call per run (nilearn 0.14.1 returns run-01's confounds alone for two runs)
        expected_confounds, masks = zip(*(load_confounds(run, strategy=("motion",), motion="basic")
                                          for run in _left_runs(dataset, model.subject_label)))
        for got, frame in zip(run_confounds, expected_confounds):
            pd.testing.assert_frame_equal(got, frame)
        # fMRIPrep's non-steady-state volume is censored (the mask rides on each run's confounds)
        carried = sample_masks_from_confounds(run_confounds)
        assert [len(kept) for kept in carried] == [29, 29]
        for kept, got in zip(masks, carried):
            np.testing.assert_array_equal(kept, got)
        ours = _z(model, runs, run_events, run_confounds)
        ref = NilearnModel(t_r=T_R, slice_time_ref=0.0, noise_model=noise_model)
        expected = quiet(_z, ref, runs, run_events, list(expected_confounds), sample_masks=list(masks))
        assert np.isfinite(expected).all() and np.abs(expected).max() > 5  # the task effects are found
        assert _agreement(ours, expected) >= 0.999
        if noise_model == "ols":  # the sample masks matter: nilearn without them is another fit
            unmasked = quiet(_z, NilearnModel(t_r=T_R, slice_time_ref=0.0, noise_model="ols"),
                              runs, run_events, list(expected_confounds))
            assert _agreement(ours, unmasked) < 0.5


def test_fsaverage5_models_without_confounds_equal_nilearns(dataset):
    kwargs = dict(space_label="fsaverage5", slice_time_ref=0.0, confounds_strategy=None, sub_labels=["02"])
    models, imgs, events, confounds = quiet(daskglm.first_level_from_bids, dataset, "main", **kwargs)
    ref_models, ref_imgs, ref_events, ref_confounds = quiet(nilearn_first_level_from_bids, dataset, "main",
                                                             **kwargs)
    assert confounds == ref_confounds == [None] and sample_masks_from_confounds(confounds[0]) is None
    for name in ("subject_label", "t_r", "slice_time_ref", "noise_model", "hrf_model", "signal_scaling"):
        assert getattr(models[0], name) == getattr(ref_models[0], name), name
    ours = _z(models[0], imgs[0], events[0])
    expected = quiet(_z, ref_models[0], ref_imgs[0], ref_events[0])
    assert np.isfinite(expected).all() and np.abs(expected).max() > 5
    assert _agreement(ours, expected) >= 0.999


def test_fit_bids_fsaverage5_store_equals_first_level_from_bids(dataset, tmp_path):
    """``fit_bids`` on the surface space: each subject's stored fit and GIfTI derivatives give the models' z."""
    kwargs = dict(space_label="fsaverage5", slice_time_ref=0.0)
    result = quiet(daskglm.fit_bids, dataset, tmp_path / "study.zarr", "main", contrasts={"d": CONTRAST},
                    progress=False, confounds_strategy=("motion",), confounds_kwargs={"motion": "basic"},
                    bids_out=tmp_path / "out", **kwargs)
    result.raise_for_errors()
    root = json.loads((tmp_path / "study.zarr" / "zarr.json").read_text())["attributes"]
    runs_recorded = root["bids"]["runs"]  # a surface run's name: its hemi-L file
    assert runs_recorded["01"] == [str(dataset.absolute() / p) for p in _left_runs(dataset, "01")]
    models, imgs, events, confounds = quiet(daskglm.first_level_from_bids, dataset, "main", **kwargs, **MOTION)
    for model, runs, run_events, run_confounds in zip(models, imgs, events, confounds):
        stored = daskglm.open_subject(tmp_path / "study.zarr", model.subject_label)
        z = quiet(stored.compute_contrast, CONTRAST)
        assert isinstance(z, SurfaceImage)
        z = np.concatenate([np.asarray(z.data.parts[h]).ravel() for h in ("left", "right")])
        assert np.isfinite(z).all()
        assert _agreement(z, _z(model, runs, run_events, run_confounds)) >= 0.999
        # BIDS derivatives: nilearn's per-hemisphere names
        written = [np.asarray(nib.load(tmp_path / "out" / f"sub-{model.subject_label}" / (
            f"sub-{model.subject_label}_task-main_hemi-{h}_space-fsaverage5_den-{N_VERTICES}"
            "_contrast-d_stat-z_statmap.gii")).agg_data()) for h in "LR"]
        np.testing.assert_allclose(np.concatenate(written), z, rtol=1e-5, atol=1e-5)
