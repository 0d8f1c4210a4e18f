"""BIDS hands ``load_confounds``' sample masks to ``fit`` with the confounds (``DataFrame.attrs``).

``first_level_from_bids`` returns each run's confounds with its mask in
``attrs["sample_mask"]``; ``FirstLevelModel.fit`` without ``sample_masks``
uses them (:func:`daskglm.glm.sample_masks.sample_masks_from_confounds`), so
nothing is injected into the models.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from nilearn.interfaces.fmriprep import load_confounds

from daskglm import FirstLevelModel, first_level_from_bids, fit_subjects, open_subject
from daskglm.data.bids import make_bids_dataset
from daskglm.glm.sample_masks import SAMPLE_MASK_ATTR, sample_masks_from_confounds, with_sample_mask
from tests.conftest import quiet

SCRUB = {"confounds_strategy": ("motion", "wm_csf", "scrub"), "confounds_motion": "basic",
         "confounds_scrub": 0, "confounds_fd_threshold": 0.5}
CONTRAST = "face - house"

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _frame(n: int, mask=None) -> pd.DataFrame:
    return with_sample_mask(pd.DataFrame({"a": np.arange(n, dtype=float)}), mask)


def test_masks_ride_on_the_frames():
    a, b = _frame(6, np.array([1, 2, 5])), _frame(4)
    assert a.attrs[SAMPLE_MASK_ATTR] == (1, 2, 5) and SAMPLE_MASK_ATTR not in b.attrs
    got = sample_masks_from_confounds([a, b])
    np.testing.assert_array_equal(got[0], [1, 2, 5])
    np.testing.assert_array_equal(got[1], np.arange(4))  # a run with nothing dropped keeps all its scans
    assert got[0].dtype == np.int64
    np.testing.assert_array_equal(sample_masks_from_confounds(a)[0], [1, 2, 5])  # one run, no list
    assert sample_masks_from_confounds([b, _frame(3)]) is None  # no run censored
    assert sample_masks_from_confounds(None) is None
    assert sample_masks_from_confounds(["conf.tsv", np.zeros((3, 1))]) is None
    assert sample_masks_from_confounds([a, "conf.tsv"])[1] is None  # no frame: nothing known
    assert SAMPLE_MASK_ATTR not in with_sample_mask(a.copy(), None).attrs


def test_masks_survive_what_the_study_path_does_to_frames():
    """Copies and pickles (cluster tasks) keep the mask; concatenating runs and JSON do not fail."""
    a, b = _frame(6, [0, 2, 3]), _frame(5, [1, 2])
    assert pickle.loads(pickle.dumps(a)).attrs == a.attrs == a.copy().attrs == a.iloc[:, :1].attrs
    assert pd.concat([a, b]).attrs == {}  # different masks: pandas drops them (an array would raise)
    json.dumps(a.attrs)


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> dict:
    return make_bids_dataset(tmp_path_factory.mktemp("handoff") / "ds", n_subjects=1, n_sessions=0,
                             n_runs=2, shape=(7, 8, 6), n_scans=40, seed=5)


def _clone(model) -> FirstLevelModel:
    return FirstLevelModel(**{**model.get_params(), "mask_img": model.mask_img})  # get_params: no image


def _z(model) -> np.ndarray:
    return quiet(model.compute_contrast, CONTRAST).get_fdata()


def test_fit_uses_the_masks_the_confounds_carry(ds):
    models, imgs, events, confounds = quiet(first_level_from_bids, ds["root"], "faces", mask_img="derivatives", **SCRUB)
    model, runs, run_events, run_confounds = models[0], imgs[0], events[0], confounds[0]
    assert not hasattr(model, "sample_masks_")  # nothing injected into the model
    kwargs = {k.removeprefix("confounds_"): v for k, v in SCRUB.items()}
    frames, masks = zip(*(load_confounds(run, **kwargs) for run in runs))
    for got, frame, mask in zip(run_confounds, frames, masks):
        pd.testing.assert_frame_equal(got, frame)
        np.testing.assert_array_equal(got.attrs[SAMPLE_MASK_ATTR], mask)
        assert len(mask) < ds["n_scans"]
    carried = _z(model.fit(runs, run_events, run_confounds))
    plain = [frame.copy() for frame in run_confounds]
    for frame in plain:
        frame.attrs.clear()
    explicit = _z(_clone(model).fit(runs, run_events, plain, sample_masks=list(masks)))
    np.testing.assert_array_equal(carried, explicit)
    unmasked = _z(_clone(model).fit(runs, run_events, plain))
    assert not np.allclose(carried, unmasked, equal_nan=True)
    # an explicit sample_masks wins over the confounds' (here: every scan kept)
    every = _z(_clone(model).fit(
        runs, run_events, run_confounds, sample_masks=[np.arange(len(f)) for f in run_confounds]))
    np.testing.assert_array_equal(every, unmasked)


def test_fit_subjects_passes_the_masks(ds, tmp_path):
    models, imgs, events, confounds = quiet(first_level_from_bids, ds["root"], "faces", mask_img="derivatives", **SCRUB)
    spec = {"01": {"run_imgs": imgs[0], "events": events[0], "confounds": confounds[0]}}
    result = quiet(fit_subjects, spec, tmp_path / "s.zarr", model=models[0], progress=False)
    assert result.ok, result.failed
    kept = sum(len(frame.attrs[SAMPLE_MASK_ATTR]) for frame in confounds[0])
    assert result.status["01"]["scans_kept"] == kept < result.status["01"]["scans"]
    np.testing.assert_array_equal(_z(open_subject(tmp_path / "s.zarr", "01")),
                                  _z(models[0].fit(imgs[0], events[0], confounds[0])))
