"""CIFTI-2 dense runs: reading, fitting against nilearn's run_glm, dense scalar maps, open_run."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel import cifti2
from nilearn.glm import compute_contrast
from nilearn.glm.first_level import make_first_level_design_matrix, mean_scaling, run_glm

import daskglm.io.cifti as cifti_io
from daskglm import FirstLevelModel, open_run
from daskglm.errors import SurfaceInputError
from daskglm.io.cifti import CiftiRunSource, write_cifti_run

N_SCANS, T_R = 100, 2.0


def brain_models() -> cifti2.BrainModelAxis:
    """Two cortical surfaces (partial vertex lists) and a subcortical volume part."""
    left = np.r_[np.ones(240, bool), np.zeros(60, bool)]
    right = np.r_[np.zeros(40, bool), np.ones(200, bool)]
    vol = np.zeros((8, 9, 10), bool)
    vol[2:5, 3:7, 4:9] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return (
        cifti2.BrainModelAxis.from_mask(left, name="CortexLeft")
        + cifti2.BrainModelAxis.from_mask(right, name="CortexRight")
        + cifti2.BrainModelAxis.from_mask(vol, name="ThalamusLeft", affine=affine)
    )


def design(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    onsets = np.sort(rng.uniform(0, (N_SCANS - 10) * T_R, 16))
    events = pd.DataFrame({"onset": onsets, "duration": 1.0, "trial_type": np.tile(["a", "b"], 8)})
    return make_first_level_design_matrix(np.arange(N_SCANS) * T_R, events, hrf_model="glover")


def simulate(X: pd.DataFrame, n_el: int, seed: int, dtype=np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    beta = rng.normal(0, 2, (X.shape[1], n_el))
    beta[-1] = 100 + rng.uniform(0, 50, n_el)  # the constant column: a baseline
    rho = rng.uniform(-0.2, 0.6, n_el)
    noise = rng.standard_normal((N_SCANS, n_el))
    for t in range(1, N_SCANS):
        noise[t] += rho * noise[t - 1]
    return (X.to_numpy() @ beta + noise).astype(dtype)


@pytest.fixture(scope="module")
def cifti_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("cifti")
    bm = brain_models()
    runs = []
    for i in range(2):
        X = design(i)
        Y = simulate(X, len(bm), 10 + i)
        path = write_cifti_run(out / f"sub-01_run-{i}_bold.dtseries.nii", bm, N_SCANS, T_R, lambda a, b, Y=Y: Y[:, a:b],
                               dtype=np.float64)
        runs.append({"path": path, "X": X, "Y": Y})
    return {"bm": bm, "runs": runs, "dir": out}


def nilearn_maps(runs, con, noise_model, scale=True):
    """nilearn's run_glm + compute_contrast on the loaded matrices (fixed effects over runs)."""
    contrasts = []
    for run in runs:
        Y = mean_scaling(run["Y"])[0] if scale else run["Y"]
        labels, results = run_glm(Y, run["X"].to_numpy(), noise_model=noise_model)
        contrasts.append(compute_contrast(labels, results, con, stat_type="t"))
    total = contrasts[0]
    for c in contrasts[1:]:
        total = total + c
    total = total * (1.0 / len(contrasts))  # nilearn's fixed-effects contrast
    return {"z_score": total.z_score(), "effect_size": np.ravel(total.effect_size()),
            "effect_variance": np.ravel(total.effect_variance())}


def test_source_reads_windows_in_blocks(cifti_runs, monkeypatch):
    run = cifti_runs["runs"][0]
    source = CiftiRunSource(run["path"])
    assert source.shape == (len(cifti_runs["bm"]), N_SCANS) and source.t_r == T_R and source.sequential
    monkeypatch.setattr(cifti_io, "BLOCK_BYTES", 7 * N_SCANS * 8)  # 7 grayordinates per mapped block
    monkeypatch.setattr(cifti_io, "WINDOW_BYTES", 13 * len(cifti_runs["bm"]) * 8)
    np.testing.assert_array_equal(source.read(17, 42), run["Y"][17:42])
    chunks = list(source.iter_chunks(4))
    assert [t0 for t0, _ in chunks] == list(range(0, N_SCANS, 4))
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), run["Y"])


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_fit_equals_run_glm(cifti_runs, noise_model):
    runs = cifti_runs["runs"]
    con = np.zeros(runs[0]["X"].shape[1])
    con[:2] = [1, -1]
    model = FirstLevelModel(mask_img=False, noise_model=noise_model)
    model.fit([r["path"] for r in runs], design_matrices=[r["X"] for r in runs])
    maps = model.compute_contrast(con, output_type="all")
    ref = nilearn_maps(runs, con, noise_model)
    for name, expected in ref.items():
        got = np.asarray(maps[name].dataobj)[0]
        np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-5, atol=1e-5, err_msg=name)


def test_unscaled_ols_equals_run_glm(cifti_runs):
    run = cifti_runs["runs"][0]
    con = np.zeros(run["X"].shape[1])
    con[0] = 1
    model = FirstLevelModel(mask_img=False, noise_model="ols", signal_scaling=False)
    z = model.fit(run["path"], design_matrices=run["X"]).compute_contrast(con)
    ref = nilearn_maps([run], con, "ols", scale=False)
    np.testing.assert_allclose(np.asarray(z.dataobj)[0], ref["z_score"], rtol=1e-5, atol=1e-5)


def test_maps_are_dense_scalars_on_the_input_brain_models(cifti_runs, tmp_path):
    run = cifti_runs["runs"][0]
    model = FirstLevelModel(mask_img=False).fit(run["path"], design_matrices=run["X"])
    z = model.compute_contrast("a - b")
    out = tmp_path / "z.dscalar.nii"
    z.to_filename(out)
    back = nib.load(out)
    assert isinstance(back, cifti2.Cifti2Image)
    assert back.nifti_header.get_intent()[0] == "ConnDenseScalar"  # intent code 3006: a dense scalar file
    scalar, bm = back.header.get_axis(0), back.header.get_axis(1)
    assert isinstance(scalar, cifti2.ScalarAxis) and len(scalar) == 1
    assert bm == cifti_runs["bm"]
    assert back.shape == (1, len(cifti_runs["bm"]))
    np.testing.assert_array_equal(np.asarray(back.dataobj), np.asarray(z.dataobj))
    assert model.mask_img_.header.get_axis(1) == cifti_runs["bm"]
    assert model.n_elements_ == len(cifti_runs["bm"])


def test_volume_parts_are_fitted_and_masked(cifti_runs):
    run = cifti_runs["runs"][0]
    bm = cifti_runs["bm"]
    keep = np.asarray(bm.name) != "CIFTI_STRUCTURE_CORTEX_RIGHT"
    mask = cifti2.Cifti2Image(
        keep[None].astype(np.float32), header=(cifti2.ScalarAxis(["mask"]), bm)
    )
    model = FirstLevelModel(mask_img=mask, noise_model="ar1").fit(run["path"], design_matrices=run["X"])
    z = np.asarray(model.compute_contrast("a").dataobj)[0]
    assert model.n_elements_ == int(keep.sum())
    assert np.all(z[~keep] == 0)
    ref = nilearn_maps([run], np.eye(run["X"].shape[1])[0], "ar1")["z_score"]
    np.testing.assert_allclose(z[keep], ref[keep], rtol=1e-5, atol=1e-5)
    volume = np.asarray(bm.volume_mask)
    assert volume.any() and np.all(np.abs(z[volume]) > 0)


def test_open_run_on_cifti(cifti_runs):
    run = cifti_runs["runs"][1]
    arr = open_run(run["path"], chunks=30)
    assert arr.dims == ("time", "grayordinate")
    assert arr.shape == (N_SCANS, len(cifti_runs["bm"]))
    assert arr.attrs["t_r"] == T_R and arr.attrs["kind"] == "cifti"
    assert set(np.unique(arr["structure"].values)) == {
        "CIFTI_STRUCTURE_CORTEX_LEFT", "CIFTI_STRUCTURE_CORTEX_RIGHT", "CIFTI_STRUCTURE_THALAMUS_LEFT"
    }
    assert arr.data.chunks[0] == (30, 30, 30, 10)
    np.testing.assert_array_equal(arr[5:40].values, run["Y"][5:40])
    left = arr.sel(grayordinate=arr["structure"] == "CIFTI_STRUCTURE_CORTEX_LEFT")
    np.testing.assert_array_equal(left["vertex"].values, np.arange(240))


def test_fit_streams_windows_not_the_whole_run(cifti_runs, monkeypatch):
    run = cifti_runs["runs"][0]
    monkeypatch.setattr(cifti_io, "WINDOW_BYTES", 20 * len(cifti_runs["bm"]) * 8)
    sizes = []
    original = CiftiRunSource.read

    def spy(self, t0, t1):
        sizes.append(t1 - t0)
        return original(self, t0, t1)

    monkeypatch.setattr(CiftiRunSource, "read", spy)
    FirstLevelModel(mask_img=False).fit(run["path"], design_matrices=run["X"]).compute_contrast("a")
    assert sizes and max(sizes) == 20 and sum(sizes) == N_SCANS


def test_bad_cifti_inputs(cifti_runs, tmp_path, fiac_small):
    run = cifti_runs["runs"][0]
    with pytest.raises(SurfaceInputError, match="mesh"):
        FirstLevelModel(mask_img=False, smoothing_fwhm=4).fit(run["path"], design_matrices=run["X"])
    with pytest.raises(FileNotFoundError):
        FirstLevelModel().fit(tmp_path / "missing.dtseries.nii", design_matrices=run["X"])
    other_bm = cifti2.BrainModelAxis.from_mask(np.ones(50, bool), name="CortexLeft")
    other = write_cifti_run(tmp_path / "other.dtseries.nii", other_bm, N_SCANS, T_R,
                            lambda a, b: np.ones((N_SCANS, b - a)))
    with pytest.raises(SurfaceInputError, match="different cifti geometry"):
        FirstLevelModel().fit([run["path"], other], design_matrices=[run["X"]] * 2)
    scalar = cifti2.Cifti2Image(np.ones((2, 50), np.float32), header=(cifti2.ScalarAxis(["a", "b"]), other_bm))
    scalar.to_filename(tmp_path / "maps.dscalar.nii")
    with pytest.raises(SurfaceInputError, match="dense time series"):
        FirstLevelModel().fit(tmp_path / "maps.dscalar.nii", design_matrices=run["X"])
    bad_mask = np.ones(len(cifti_runs["bm"]) + 1, bool)
    with pytest.raises(SurfaceInputError, match="grayordinates"):
        FirstLevelModel(mask_img=bad_mask).fit(run["path"], design_matrices=run["X"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            FirstLevelModel().fit([run["path"], fiac_small["func1"]], design_matrices=[run["X"]] * 2)


def test_fixed_effects_on_dense_scalars(cifti_runs, tmp_path):
    from nilearn.glm.contrasts import _compute_fixed_effects_params

    from daskglm import compute_fixed_effects

    cons, vars_ = [], []
    for i, run in enumerate(cifti_runs["runs"]):
        maps = FirstLevelModel(mask_img=False).fit(run["path"], design_matrices=run["X"]).compute_contrast(
            "a - b", output_type="all")
        maps["effect_size"].to_filename(tmp_path / f"con{i}.dscalar.nii")
        cons.append(tmp_path / f"con{i}.dscalar.nii")
        vars_.append(maps["effect_variance"])
    got = compute_fixed_effects(cons, vars_, precision_weighted=True)
    arrays = [np.stack([nib.load(c).get_fdata()[0] for c in cons]), np.stack([v.get_fdata()[0] for v in vars_])]
    ref = _compute_fixed_effects_params(*arrays, True, [100, 100])
    for a, b in zip(got, ref):
        assert a.header.get_axis(1) == cifti_runs["bm"]
        np.testing.assert_allclose(np.asarray(a.dataobj)[0], b, rtol=1e-5, atol=1e-6)


def test_results_dataset_and_store_round_trip(cifti_runs, tmp_path):
    from daskglm import open_model

    run = cifti_runs["runs"][0]
    model = FirstLevelModel(mask_img=False, noise_model="ar1").fit(run["path"], design_matrices=run["X"])
    ds = model.results_
    assert ds.sizes["voxel"] == len(cifti_runs["bm"]) and ds.attrs["surface_geometry"]
    beta = ds["beta"].isel(run=0).values
    labels, results = run_glm(mean_scaling(run["Y"])[0], run["X"].to_numpy(), noise_model="ar1")
    theta = np.empty_like(beta)
    for label, result in results.items():
        theta[:, labels == label] = result.theta
    np.testing.assert_allclose(beta, theta, atol=1e-8)
    z = model.compute_contrast("a - b")
    model.to_zarr(tmp_path / "fit.zarr")
    back = open_model(tmp_path / "fit.zarr")
    z_back = back.compute_contrast("a - b")
    assert isinstance(z_back, cifti2.Cifti2Image) and z_back.header.get_axis(1) == cifti_runs["bm"]
    np.testing.assert_array_equal(np.asarray(z_back.dataobj), np.asarray(z.dataobj))


def test_cli_fit_and_contrast_on_cifti(cifti_runs, tmp_path, capsys):
    from daskglm.cli import main

    run = cifti_runs["runs"][0]
    run["X"].to_csv(tmp_path / "design.csv", index=False)
    store = tmp_path / "fit.zarr"
    assert main(["fit", str(run["path"]), "--design", str(tmp_path / "design.csv"), "-o", str(store),
                 "--no-progress"]) == 0
    assert main(["contrast", str(store), "a - b", "-o", str(tmp_path / "maps"), "--no-progress"]) == 0
    (path,) = (tmp_path / "maps").glob("*.dscalar.nii")
    z = nib.load(path)
    assert z.header.get_axis(1) == cifti_runs["bm"]
    expected = FirstLevelModel().fit(run["path"], design_matrices=run["X"]).compute_contrast("a - b")
    np.testing.assert_allclose(np.asarray(z.dataobj), np.asarray(expected.dataobj), rtol=1e-6, atol=1e-6)
    # the report of a CIFTI fit: without a mesh, tables per brain structure (tests/cli/test_surfaces.py)
    assert main(["report", str(store), "a - b", "-o", str(tmp_path / "r.html"), "--no-progress"]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "Brain structures" in page and "CORTEX_LEFT" in page and "Surface panels need a mesh" in page


def test_fit_on_open_run_dataarray(cifti_runs):
    run = cifti_runs["runs"][1]
    arr = open_run(run["path"], chunks=25)
    got = FirstLevelModel(mask_img=False).fit(arr[10:], design_matrices=run["X"].iloc[10:]).compute_contrast("a")
    ref = nilearn_maps([{"Y": run["Y"][10:], "X": run["X"].iloc[10:]}], np.eye(run["X"].shape[1])[0], "ar1")
    np.testing.assert_allclose(np.asarray(got.dataobj)[0], ref["z_score"], rtol=1e-5, atol=1e-5)
    with pytest.raises(SurfaceInputError, match="grayordinates"):
        FirstLevelModel(mask_img=False).fit(arr[:, :100], design_matrices=run["X"])


def test_fit_reads_nothing_until_a_contrast(cifti_runs, no_heavy_work, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("CIFTI data read during fit()")

    monkeypatch.setattr(CiftiRunSource, "read", forbidden)
    monkeypatch.setattr(CiftiRunSource, "iter_chunks", forbidden)
    runs = cifti_runs["runs"]
    model = FirstLevelModel(noise_model="ar1").fit([r["path"] for r in runs], design_matrices=[r["X"] for r in runs])
    assert model.n_elements_ == len(cifti_runs["bm"])
    model.contrast_maps("a - b")  # the graph of a contrast: still nothing computed


def test_cli_sample_mask_and_drop_initial_on_cifti(cifti_runs, tmp_path):
    """--sample-mask / --drop-initial count the scans of a .dtseries.nii run from its CIFTI header."""
    from daskglm import open_model
    from daskglm.cli import main

    run = cifti_runs["runs"][0]
    events = tmp_path / "events.tsv"
    rng = np.random.default_rng(0)
    onsets = np.sort(rng.uniform(10, (N_SCANS - 10) * T_R, 12))
    table = pd.DataFrame({"onset": onsets, "duration": 1.0, "trial_type": np.tile(["a", "b"], 6)})
    table.to_csv(events, sep="\t", index=False)
    keep = np.ones(N_SCANS, bool)
    keep[[20, 21, 50]] = False
    mask_file = tmp_path / "keep.txt"
    mask_file.write_text("\n".join(str(int(v)) for v in keep))
    store = tmp_path / "fit.zarr"
    assert main(["fit", str(run["path"]), "--events", str(events), "--t-r", str(T_R), "--sample-mask",
                 str(mask_file), "--drop-initial", "4", "-o", str(store), "--no-progress"]) == 0
    expected_keep = np.flatnonzero(keep)
    expected_keep = expected_keep[expected_keep >= 4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = FirstLevelModel(t_r=T_R).fit(run["path"], events=table, sample_masks=[expected_keep])
        fitted = open_model(store)
        assert len(fitted.design_matrices_[0]) == len(expected_keep)  # scans fitted
        np.testing.assert_allclose(np.asarray(fitted.compute_contrast("a - b").dataobj),
                                   np.asarray(reference.compute_contrast("a - b").dataobj), rtol=1e-8, atol=1e-8)
