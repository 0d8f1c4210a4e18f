"""Censoring (``sample_masks``): nilearn 0.14.1's semantics, in one streaming pass.

nilearn restricts the design rows and the data to the kept scans and fits the
GLM (the AR model included) on the kept sequence as if it were contiguous.
Maps must equal nilearn's for every source kind (``.nii.gz`` streamed,
``.nii`` chunked, in-memory arrays), with scans censored at the start, in the
middle and at the end of a run, with events and confounds, OLS and AR(1),
boolean masks and index arrays, and chunk boundaries that fall on censored scans.
Bad masks raise nilearn's errors; the CLI takes ``--sample-mask`` and
``--drop-initial``; resume keys tell censored fits apart.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm import FirstLevelModel
from daskglm.errors import SampleMaskError
from daskglm.glm.sample_masks import check_sample_masks, drop_initial, read_sample_mask

SHAPE, N_SCANS, T_R = (9, 10, 8), 70, 2.0
OUTPUTS = ("z_score", "stat", "p_value", "effect_size", "effect_variance")


def _run(rng, n_scans=N_SCANS, shift=0.0) -> np.ndarray:
    base = 100 + 20 * rng.random(SHAPE)
    noise = rng.standard_normal((*SHAPE, n_scans))
    for t in range(1, n_scans):  # AR(1)-like noise, so the AR fit matters
        noise[..., t] += 0.4 * noise[..., t - 1]
    data = base[..., None] * (1 + 0.01 * noise)
    data[2:6, 3:7, 2:5] += 2 * np.sin(np.arange(n_scans) / 4 + shift)
    return data


@pytest.fixture(scope="module")
def cdata(tmp_path_factory) -> dict:
    """Two float64 runs (files and images), events, confounds, a mask and sample masks."""
    root = tmp_path_factory.mktemp("censoring")
    rng = np.random.default_rng(12)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    imgs = [nib.Nifti1Image(_run(rng, shift=s), affine) for s in (0.0, 1.0)]
    paths = {}
    for suffix in (".nii.gz", ".nii"):
        paths[suffix] = []
        for i, img in enumerate(imgs):
            path = root / f"run{i}{suffix}"
            nib.save(img, path)
            paths[suffix].append(str(path))
    events = pd.DataFrame({"onset": [8, 30, 52, 74, 96, 118], "duration": [8] * 6,
                           "trial_type": ["a", "b"] * 3})
    confounds = [pd.DataFrame({"motion": rng.standard_normal(N_SCANS), "fd": rng.random(N_SCANS)})
                 for _ in imgs]
    keep0 = np.ones(N_SCANS, bool)
    keep0[:3] = False  # non-steady-state volumes
    keep0[[20, 21, 22, 40, 69]] = False  # scrubbed in the middle and at the end
    keep1 = np.ones(N_SCANS, bool)
    keep1[[0, 33, 34, 50]] = False
    mask = nib.Nifti1Image((np.asarray(imgs[0].dataobj).mean(-1) > 105).astype(np.uint8), affine)
    return {"imgs": imgs, "paths": paths, "events": [events, events], "confounds": confounds,
            "keep": [keep0, keep1], "mask": mask, "root": root}


def _maps(model, contrast="a - b") -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = model.compute_contrast(contrast, output_type="all")
    return {k: np.asarray(v.dataobj) for k, v in maps.items()}


@pytest.fixture(scope="module")
def nilearn_maps(cdata) -> dict:
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    out = {}
    for noise_model in ("ols", "ar1"):
        model = NilearnModel(t_r=T_R, noise_model=noise_model, mask_img=cdata["mask"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(cdata["imgs"], events=cdata["events"], confounds=cdata["confounds"],
                      sample_masks=cdata["keep"])
        out[noise_model] = _maps(model)
    return out


def _assert_match(ours: dict, theirs: dict, mask: np.ndarray) -> None:
    for name in OUTPUTS:
        a, b = ours[name][mask], theirs[name][mask]
        close = np.isclose(a, b, rtol=1e-6, atol=1e-6 * max(1.0, float(np.abs(b).max())))
        assert close.all(), f"{name}: {np.mean(~close):.2%} of voxels differ, max {np.abs(a - b).max():.3g}"


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize("kind", [".nii.gz", ".nii", "image"])
@pytest.mark.parametrize("as_indices", [False, True])
def test_censored_maps_equal_nilearn(cdata, nilearn_maps, noise_model, kind, as_indices):
    runs = cdata["imgs"] if kind == "image" else cdata["paths"][kind]
    masks = [np.flatnonzero(k) for k in cdata["keep"]] if as_indices else cdata["keep"]
    # 6-scan time chunks: chunk edges fall on censored scans (3, 21, 69...) and between them
    model = FirstLevelModel(t_r=T_R, noise_model=noise_model, mask_img=cdata["mask"],
                            chunks={"time": 6, "voxel": 97})
    model.fit(runs, events=cdata["events"], confounds=cdata["confounds"], sample_masks=masks)
    assert [len(d) for d in model.design_matrices_] == [int(k.sum()) for k in cdata["keep"]]
    _assert_match(_maps(model), nilearn_maps[noise_model], np.asarray(cdata["mask"].dataobj) > 0)


def test_censoring_changes_the_fit(cdata, nilearn_maps):
    """The comparison above is not vacuous: without censoring the maps differ."""
    model = FirstLevelModel(t_r=T_R, mask_img=cdata["mask"]).fit(
        cdata["imgs"], events=cdata["events"], confounds=cdata["confounds"])
    z = _maps(model)["z_score"]
    mask = np.asarray(cdata["mask"].dataobj) > 0
    assert np.abs(z[mask] - nilearn_maps["ar1"]["z_score"][mask]).max() > 1e-2


def test_keeping_every_scan_is_no_censoring(cdata):
    full = [np.ones(N_SCANS, bool)] * 2
    a = FirstLevelModel(t_r=T_R, mask_img=cdata["mask"]).fit(
        cdata["paths"][".nii"], events=cdata["events"], sample_masks=full)
    b = FirstLevelModel(t_r=T_R, mask_img=cdata["mask"]).fit(cdata["paths"][".nii"], events=cdata["events"])
    # engine internals on purpose: a full mask must not wrap the run in a censoring view (another read
    # path); no public attribute shows how a run is read, and the maps below are equal either way
    assert a._state.sources[0] is not None and type(a._state.sources[0]) is type(b._state.sources[0])
    np.testing.assert_array_equal(_maps(a)["z_score"], _maps(b)["z_score"])


def test_residuals_cover_the_kept_scans(cdata):
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    keep = [cdata["keep"][0]]
    ours = FirstLevelModel(t_r=T_R, mask_img=cdata["mask"], minimize_memory=False, noise_model="ols").fit(
        cdata["paths"][".nii.gz"][0], events=cdata["events"][0], sample_masks=keep)
    theirs = NilearnModel(t_r=T_R, mask_img=cdata["mask"], minimize_memory=False, noise_model="ols").fit(
        cdata["imgs"][0], events=cdata["events"][0], sample_masks=keep)
    a, b = ours.residuals_[0].get_fdata(), theirs.residuals_[0].get_fdata()
    assert a.shape == b.shape == (*SHAPE, int(keep[0].sum()))
    np.testing.assert_allclose(a, b, atol=1e-8)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("masks", "error", "fragment"),
    [
        ("0 1 2", TypeError, "'sample_masks' must be of type"),
        ([np.arange(5)] * 3, SampleMaskError, "Number of sample_mask (3) not matching number of runs (2)"),
        ([np.array([-1, 2]), np.arange(3)], SampleMaskError, "should not contain negative values"),
        ([np.array([1, 70]), np.arange(3)], SampleMaskError, "contains invalid index [70]"),
        ([np.ones(60, bool), np.arange(3)], SampleMaskError, "boolean mask of 60 values"),
        ([np.array([3, 2, 5]), np.arange(3)], SampleMaskError, "increasing order"),
        ([np.zeros(N_SCANS, bool), np.arange(3)], SampleMaskError, "keeps no scan"),
    ],
)
def test_bad_sample_masks(masks, error, fragment):
    with pytest.raises(error) as info:
        check_sample_masks(masks, [N_SCANS, N_SCANS])
    assert fragment in str(info.value)


def test_out_of_range_index_is_also_an_index_error():
    """nilearn raises IndexError there; ours is both a ValueError and an IndexError."""
    with pytest.raises(IndexError):
        check_sample_masks([np.array([0, N_SCANS])], [N_SCANS])


def test_bad_mask_fails_before_reading(cdata, monkeypatch):
    from daskglm.io.nifti import FileRunSource

    monkeypatch.setattr(FileRunSource, "read", lambda *a, **k: pytest.fail("read volumes"))
    with pytest.raises(SampleMaskError, match="invalid index"):
        FirstLevelModel(t_r=T_R, mask_img=cdata["mask"]).fit(
            cdata["paths"][".nii"][0], events=cdata["events"][0], sample_masks=np.array([1, 2, 700]))


def test_resume_keys_include_the_sample_mask(cdata):
    from daskglm.store.keys import run_keys

    def keys(masks):
        model = FirstLevelModel(t_r=T_R, mask_img=cdata["mask"]).fit(
            cdata["paths"][".nii"], events=cdata["events"], sample_masks=masks)
        # the resume keys are the store's engine internals: they are computed from the fitted state
        return run_keys(model._state, model.get_params(), "auto")

    plain, censored = keys(None), keys(cdata["keep"])
    shifted = [k.copy() for k in cdata["keep"]]
    shifted[1][[33, 34]] = True
    shifted[1][[35, 36]] = False  # same number of kept scans, other scans
    other = keys(shifted)
    assert plain[0] != censored[0] and plain[1] != censored[1]
    assert censored[0] == other[0] and censored[1] != other[1]


# --------------------------------------------------------------------- CLI
def test_read_sample_mask_formats(tmp_path):
    (tmp_path / "idx.txt").write_text("0\n2\n5\n")
    (tmp_path / "bool.txt").write_text("1 0 1 1 0 1")
    (tmp_path / "words.txt").write_text("true,false,true")
    np.testing.assert_array_equal(read_sample_mask(tmp_path / "idx.txt", 6), [0, 2, 5])
    np.testing.assert_array_equal(read_sample_mask(tmp_path / "bool.txt", 6), [1, 0, 1, 1, 0, 1])
    assert read_sample_mask(tmp_path / "bool.txt", 6).dtype == bool
    assert read_sample_mask(tmp_path / "words.txt").tolist() == [True, False, True]
    np.testing.assert_array_equal(drop_initial(2, 6, read_sample_mask(tmp_path / "bool.txt", 6)), [2, 3, 5])
    with pytest.raises(FileNotFoundError):
        read_sample_mask(tmp_path / "missing.txt")


def test_cli_sample_mask_and_drop_initial(cdata, tmp_path):
    from daskglm import open_model
    from daskglm.cli import main

    events = tmp_path / "events.tsv"
    cdata["events"][0].to_csv(events, sep="\t", index=False)
    mask_path = tmp_path / "mask.nii.gz"
    nib.save(cdata["mask"], mask_path)
    keep = cdata["keep"][1]
    mask_file = tmp_path / "keep.txt"
    mask_file.write_text("\n".join(str(int(v)) for v in keep))
    store = tmp_path / "fit.zarr"
    code = main(["fit", cdata["paths"][".nii.gz"][1], "--events", str(events), "--t-r", str(T_R),
                 "--mask", str(mask_path), "--sample-mask", str(mask_file), "--drop-initial", "5",
                 "-o", str(store), "--no-progress"])
    assert code == 0
    expected_keep = np.flatnonzero(keep)
    expected_keep = expected_keep[expected_keep >= 5]
    reference = FirstLevelModel(t_r=T_R, mask_img=cdata["mask"]).fit(
        cdata["imgs"][1], events=cdata["events"][0], sample_masks=[expected_keep])
    np.testing.assert_allclose(_maps(open_model(store))["z_score"], _maps(reference)["z_score"], atol=1e-10)


def test_censored_fit_builds_lazily(cdata, no_heavy_work):
    """fit with sample_masks reads headers only; the graph computes nothing until asked."""
    model = FirstLevelModel(t_r=T_R, mask_img=cdata["mask"]).fit(
        cdata["paths"][".nii.gz"], events=cdata["events"], confounds=cdata["confounds"],
        sample_masks=cdata["keep"])
    assert [len(d) for d in model.design_matrices_] == [int(k.sum()) for k in cdata["keep"]]


def test_a_carried_sample_mask_that_no_longer_fits_its_table_is_refused():
    """pandas keeps attrs through slicing and concat: a stale scan list must not censor the wrong scans."""
    from daskglm.errors import SampleMaskError
    from daskglm.glm.sample_masks import sample_masks_from_confounds, with_sample_mask

    table = with_sample_mask(pd.DataFrame({"a": np.arange(10.0)}), np.arange(2, 10))
    np.testing.assert_array_equal(sample_masks_from_confounds([table])[0], np.arange(2, 10))
    assert table.iloc[2:].attrs["sample_mask"] == tuple(range(2, 10))  # pandas carries it along
    with pytest.raises(SampleMaskError, match="made for 10 scans but has 8 rows"):
        sample_masks_from_confounds([table.iloc[2:]])
    with pytest.raises(SampleMaskError, match="run 1 carries a sample mask made for 10 scans but has 20"):
        sample_masks_from_confounds(pd.concat([table, table]))
    assert sample_masks_from_confounds([with_sample_mask(table.iloc[2:].copy(), None)]) is None
