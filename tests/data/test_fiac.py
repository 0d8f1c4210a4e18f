"""The FIAC-like simulator and the offline path of the real FIAC fetcher."""

from __future__ import annotations

import socket

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm.data.fiac import FIAC_CONDITIONS, REGIONS, fetch_fiac_first_level, make_fiac_like


@pytest.fixture(scope="module")
def fiac_full_design(tmp_path_factory):
    """FIAC's run length (191 scans at TR 2.5 s) on a tiny grid."""
    return make_fiac_like(tmp_path_factory.mktemp("fiac_191"), shape=(10, 12, 10), n_scans=191, seed=3)


def test_make_fiac_like_files_and_shapes(fiac_full_design):
    data = fiac_full_design
    for run in (1, 2):
        img = nib.load(data[f"func{run}"])
        assert img.shape == (10, 12, 10, 191)
        assert img.header.get_zooms()[3] == pytest.approx(2.5)
        events = pd.read_csv(data[f"events{run}"], sep="\t")
        assert set(events.columns) == {"onset", "duration", "trial_type"}
        assert set(events["trial_type"]) == {*FIAC_CONDITIONS, "FirstSt"}
    mask = nib.load(data["mask"])
    assert mask.shape == (10, 12, 10)
    assert 0.2 < np.asarray(mask.dataobj).mean() < 0.9
    assert set(data["ground_truth"]) == set(REGIONS)


def test_make_fiac_like_design_has_nilearn_example_columns(fiac_full_design):
    with np.load(fiac_full_design["design_matrix1"]) as npz:
        X, columns = npz["X"], list(npz["columns"])
    assert X.shape == (191, 13)  # 5 conditions, 7 drifts, constant, as the seed example
    assert columns[:5] == [*FIAC_CONDITIONS, "FirstSt"]
    assert columns[-1] == "constant"
    np.testing.assert_allclose(X[:, -1], 1.0)


def test_ground_truth_regions_in_brain_and_left_is_left(fiac_full_design):
    mask = np.asarray(nib.load(fiac_full_design["mask"]).dataobj) > 0
    centres = {}
    for name, path in fiac_full_design["ground_truth"].items():
        img = nib.load(path)
        region = np.asarray(img.dataobj) > 0
        assert region.any() and not (region & ~mask).any(), name
        ijk = np.argwhere(region).mean(axis=0)
        centres[name] = nib.affines.apply_affine(img.affine, ijk)
    ijk_brain = np.argwhere(mask).mean(axis=0)
    brain_x = nib.affines.apply_affine(nib.load(fiac_full_design["mask"]).affine, ijk_brain)[0]
    assert centres["language_left"][0] < brain_x  # smaller world x is further left
    assert centres["sentence_repetition"][0] > brain_x


def test_seed_cut_coords_fall_on_the_sentence_repetition_region(tmp_path):
    from daskglm.data.fiac import FIAC_CUT_COORDS

    data = make_fiac_like(tmp_path, shape=(16, 18, 16), n_scans=80, seed=5, compress=False)
    truth = nib.load(data["ground_truth"]["sentence_repetition"])
    ijk = np.round(nib.affines.apply_affine(np.linalg.inv(truth.affine), FIAC_CUT_COORDS)).astype(int)
    assert np.asarray(truth.dataobj)[tuple(ijk)] > 0
    centred = make_fiac_like(tmp_path / "c", shape=(16, 18, 16), n_scans=80, seed=5, compress=False,
                             coordinates="centred")
    affine = nib.load(centred["mask"]).affine
    np.testing.assert_allclose(nib.affines.apply_affine(affine, (np.array((16, 18, 16)) - 1) / 2), 0)


def test_make_fiac_like_activation_is_where_the_truth_says(tmp_path):
    data = make_fiac_like(tmp_path, shape=(12, 14, 12), n_scans=60, seed=4, noise_level=0.0,
                          compress=False)
    bold = np.asarray(nib.load(data["func1"]).dataobj)
    truth = np.asarray(nib.load(data["ground_truth"]["sentence_repetition"]).dataobj) > 0
    others = sum(np.asarray(nib.load(p).dataobj) for p in data["ground_truth"].values()) == 0
    brain = np.asarray(nib.load(data["mask"]).dataobj) > 0
    relative_range = np.ptp(bold, axis=3) / bold.mean(axis=3).clip(1)
    assert relative_range[truth].min() > 0.01
    assert relative_range[others & brain].max() < 1e-6


def _write_nilearn_fiac_layout(root, rng) -> dict:
    """Files as nilearn's fetcher leaves them after download and extraction."""
    subject = root / "fiac_nilearn.glm" / "nipy-data-0.2" / "data" / "fiac" / "fiac0"
    subject.mkdir(parents=True)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    conditions = np.array([b"SSt-SSp", b"SSt-DSp", b"DSt-SSp", b"DSt-DSp", b"FirstSt", b"constant"])
    for run in (1, 2):
        nib.save(nib.Nifti1Image(rng.standard_normal((4, 5, 3, 12)).astype(np.float32), affine),
                 subject / f"run{run}.nii.gz")
        np.savez(subject / f"run{run}_design.npz", X=rng.standard_normal((12, 6)), conditions=conditions)
    nib.save(nib.Nifti1Image(np.ones((4, 5, 3), np.uint8), affine), subject / "mask.nii.gz")
    return {"subject": subject}


def test_fetch_fiac_first_level_offline(tmp_path, monkeypatch):
    layout = _write_nilearn_fiac_layout(tmp_path, np.random.default_rng(0))

    def no_network(*args, **kwargs):
        raise AssertionError("fetch_fiac_first_level tried to use the network")

    monkeypatch.setattr("nilearn.datasets.func.fetch_single_file", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    data = fetch_fiac_first_level(data_dir=tmp_path, verbose=0)
    assert data["func1"] == str(layout["subject"] / "run1.nii.gz")
    assert data["func2"] == str(layout["subject"] / "run2.nii.gz")
    assert data["mask"] == str(layout["subject"] / "mask.nii.gz")
    design = data["design_matrix1"]
    assert isinstance(design, pd.DataFrame) and design.shape == (12, 6)
    assert list(design.columns)[:5] == [*FIAC_CONDITIONS, "FirstSt"]
    assert nib.load(data["func2"]).shape == (4, 5, 3, 12)


def test_fetch_fiac_first_level_offline_missing_file_would_download(tmp_path, monkeypatch):
    layout = _write_nilearn_fiac_layout(tmp_path, np.random.default_rng(1))
    (layout["subject"] / "mask.nii.gz").unlink()

    class Downloaded(Exception):
        pass

    def fake_download(*args, **kwargs):
        raise Downloaded

    monkeypatch.setattr("nilearn.datasets.func.fetch_single_file", fake_download)
    with pytest.raises(Downloaded):
        fetch_fiac_first_level(data_dir=tmp_path, verbose=0)
