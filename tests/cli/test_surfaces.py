"""The command line on surfaces: GIfTI and CIFTI runs through `daskglm fit / contrast / report`.

Maps written by the CLI are compared with nilearn 0.14.1: its ``FirstLevelModel`` on the same
GIfTI files (``SurfaceImage``), and ``run_glm`` + ``compute_contrast`` on the same CIFTI matrix.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel import cifti2
from nilearn.datasets import load_fsaverage
from nilearn.glm import compute_contrast
from nilearn.glm.first_level import FirstLevelModel as NilearnFLM
from nilearn.glm.first_level import mean_scaling, run_glm
from nilearn.surface import SurfaceImage

from daskglm import open_model
from daskglm.cli import main
from daskglm.io.cifti import write_cifti_run

N_SCANS, T_R = 40, 2.0
N_FS5 = 10242


def _events(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    onsets = np.sort(rng.uniform(0, (N_SCANS - 8) * T_R, 8))
    return pd.DataFrame({"onset": onsets, "duration": 1.0, "trial_type": np.tile(["a", "b"], 4)})


def _signal(n_el: int, seed: int) -> np.ndarray:
    """(n_scans, n_el): AR(1) noise around a baseline, an 'effect' on the first tenth."""
    rng = np.random.default_rng(seed)
    rho = rng.uniform(-0.1, 0.5, n_el)
    y = rng.standard_normal((N_SCANS, n_el))
    for t in range(1, N_SCANS):
        y[t] += rho * y[t - 1]
    y[8:16, : n_el // 10] += 2.0
    return 100 + 20 * rng.uniform(size=n_el) + y


def _write_func_gii(path, data: np.ndarray) -> str:
    """fMRIPrep's layout: one float32 DataArray per scan."""
    arrays = [nib.gifti.GiftiDataArray(row.astype(np.float32), intent="NIFTI_INTENT_TIME_SERIES",
                                       datatype="NIFTI_TYPE_FLOAT32") for row in data]
    nib.save(nib.gifti.GiftiImage(darrays=arrays), path)
    return str(path)


def _gifti_values(paths) -> np.ndarray:
    return np.concatenate([np.asarray(nib.load(p).agg_data(), dtype=np.float64).ravel() for p in paths])


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("daskglm: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def gifti(tmp_path_factory):
    out = tmp_path_factory.mktemp("gifti")
    runs = []
    for i in range(2):
        files = {}
        for j, hemi in enumerate("LR"):
            files[hemi] = _write_func_gii(out / f"sub-01_run-{i + 1}_hemi-{hemi}_bold.func.gii",
                                          _signal(N_FS5, 10 * i + j))
        events = out / f"events{i + 1}.tsv"
        _events(i).to_csv(events, sep="\t", index=False)
        runs.append({**files, "events": str(events)})
    return {"dir": out, "runs": runs}


def _fit_args(gifti, store, *extra) -> list[str]:
    runs = gifti["runs"]
    return ["fit", "--left-run", *[r["L"] for r in runs], "--right-run", *[r["R"] for r in runs],
            "--mesh", "fsaverage5", "--events", *[r["events"] for r in runs], "--t-r", str(T_R),
            "-o", str(store), "--no-progress", *extra]


@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_cli_gifti_maps_equal_nilearn(gifti, tmp_path, noise_model, capsys):
    store = tmp_path / "fit.zarr"
    assert main(_fit_args(gifti, store, "--noise-model", noise_model)) == 0
    assert "20,484 vertices" in capsys.readouterr().out
    out = tmp_path / "maps"
    assert main(["contrast", str(store), "amb=a - b", "-t", "z_score", "effect_size", "-o", str(out),
                 "--no-progress"]) == 0
    mesh = load_fsaverage("fsaverage5")["pial"]
    imgs = [SurfaceImage(mesh=mesh, data={"left": r["L"], "right": r["R"]}) for r in gifti["runs"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnFLM(t_r=T_R, noise_model=noise_model).fit(
            imgs, events=[pd.read_csv(r["events"], sep="\t") for r in gifti["runs"]]
        ).compute_contrast("a - b", output_type="all")
    for output_type, suffix in (("z_score", "z_map"), ("effect_size", "effect_size")):
        files = [out / f"amb_{suffix}_hemi-{h}.func.gii" for h in "LR"]
        got = _gifti_values(files)
        expected = np.concatenate([np.asarray(ref[output_type].data.parts[p], np.float64).ravel()
                                   for p in ("left", "right")])
        assert got.shape == (2 * N_FS5,)
        close = np.isclose(got, expected, rtol=1e-4, atol=1e-4)  # float32 GIfTI maps
        assert close.mean() >= 0.999, (output_type, np.abs(got - expected).max())


def test_cli_gifti_masks_mesh_files_and_report(gifti, tmp_path):
    fs5 = load_fsaverage("fsaverage5")["pial"]
    masks = []
    for hemi in "LR":
        keep = np.zeros(N_FS5, np.float32)
        keep[: N_FS5 // 2] = 1
        masks.append(str(tmp_path / f"mask_hemi-{hemi}.func.gii"))
        nib.save(nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(keep)]), masks[-1])
    store = tmp_path / "fit.zarr"
    args = _fit_args(gifti, store, "--left-mask", masks[0], "--right-mask", masks[1], "--drop-initial", "2")
    i = args.index("fsaverage5")
    args[i : i + 1] = [str(fs5.parts["left"].file_path), str(fs5.parts["right"].file_path)]  # mesh files
    assert main(args) == 0
    model = open_model(store)
    assert model.n_elements_ == N_FS5 and len(model.design_matrices_[0]) == N_SCANS - 2  # scans fitted
    mask = SurfaceImage(mesh=fs5, data={"left": masks[0], "right": masks[1]})
    runs = gifti["runs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnFLM(t_r=T_R, mask_img=mask).fit(
            [SurfaceImage(mesh=fs5, data={"left": r["L"], "right": r["R"]}) for r in runs],
            events=[pd.read_csv(r["events"], sep="\t") for r in runs],
            sample_masks=[np.arange(2, N_SCANS)] * 2).compute_contrast("a - b")
    got = model.compute_contrast("a - b")
    for part in ("left", "right"):
        np.testing.assert_allclose(np.asarray(got.data.parts[part]).ravel(),
                                   np.asarray(ref.data.parts[part]).ravel(), rtol=1e-6, atol=1e-6)
    html_path = tmp_path / "report.html"
    assert main(["report", str(store), "a - b", "-o", str(html_path), "--no-progress"]) == 0
    page = html_path.read_text()
    assert "Surface z map of a - b" in page and "vertices per part: left: 5121 of 10242" in page


def test_cli_gifti_bad_inputs(gifti, tmp_path, capsys):
    run = gifti["runs"][0]
    store = str(tmp_path / "fit.zarr")
    base = ["--events", run["events"], "--t-r", str(T_R), "-o", store, "--no-progress"]
    assert main(["fit", run["L"], *base]) == 2
    assert "--left-run" in _err_line(capsys)
    assert main(["fit", "--left-run", run["L"], "--right-run", run["R"], *base]) == 2
    assert "need their mesh" in _err_line(capsys)
    assert main(["fit", "--left-run", run["L"], "--mesh", "fsaverage5", *base]) == 2
    assert "only --left-run" in _err_line(capsys)
    assert main(["fit", "--left-run", run["L"], "--right-run", run["R"], gifti["runs"][1]["R"],
                 "--mesh", "fsaverage5", *base]) == 2
    assert "one file per hemisphere" in _err_line(capsys)
    assert main(["fit", "--left-run", run["L"], "--right-run", run["R"], "--mesh", "fsaverage7", *base]) == 2
    assert "standard mesh" in _err_line(capsys)
    small = _write_func_gii(tmp_path / "small_hemi-R.func.gii", np.ones((N_SCANS, 100)))
    assert main(["fit", "--left-run", run["L"], "--right-run", small, "--mesh", "fsaverage5", *base]) == 2
    assert "100 vertices" in _err_line(capsys)
    assert main(["fit", "--left-run", run["L"], "--right-run", run["R"], "--mesh", "fsaverage5",
                 "--mask", run["L"], *base]) == 2
    assert "--left-mask" in _err_line(capsys)
    assert not (tmp_path / "fit.zarr").exists()


# ------------------------------------------------------------------ CIFTI
def _fs5_brain_models() -> cifti2.BrainModelAxis:
    """fsaverage5-sized cortices without a 'medial wall', and a small subcortical volume part."""
    left = np.ones(N_FS5, bool)
    left[:500] = False
    right = np.ones(N_FS5, bool)
    right[-700:] = False
    vol = np.zeros((6, 7, 8), bool)
    vol[1:4, 2:5, 3:7] = True
    return (cifti2.BrainModelAxis.from_mask(left, name="CortexLeft")
            + cifti2.BrainModelAxis.from_mask(right, name="CortexRight")
            + cifti2.BrainModelAxis.from_mask(vol, name="ThalamusLeft", affine=np.diag([2.0, 2.0, 2.0, 1.0])))


@pytest.fixture(scope="module")
def cifti(tmp_path_factory):
    out = tmp_path_factory.mktemp("cifti")
    bm = _fs5_brain_models()
    Y = _signal(len(bm), 7)
    path = write_cifti_run(out / "sub-01_task-x_space-fsLR_bold.dtseries.nii", bm, N_SCANS, T_R,
                           lambda a, b: Y[:, a:b], dtype=np.float64)
    events = out / "events.tsv"
    _events(3).to_csv(events, sep="\t", index=False)
    return {"path": str(path), "Y": Y, "bm": bm, "events": str(events), "dir": out}


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_cli_cifti_maps_equal_run_glm(cifti, tmp_path, noise_model):
    store = tmp_path / "fit.zarr"
    assert main(["fit", cifti["path"], "--events", cifti["events"], "--t-r", str(T_R), "--noise-model",
                 noise_model, "-o", str(store), "--no-progress"]) == 0
    out = tmp_path / "maps"
    assert main(["contrast", str(store), "amb=a - b", "-t", "z_score", "effect_size", "-o", str(out),
                 "--no-progress"]) == 0
    X = open_model(store).design_matrices_[0]
    con = np.zeros(X.shape[1])
    con[[list(X.columns).index("a"), list(X.columns).index("b")]] = [1, -1]
    labels, results = run_glm(mean_scaling(cifti["Y"])[0], X.to_numpy(), noise_model=noise_model)
    ref = compute_contrast(labels, results, con, stat_type="t")
    for suffix, expected in (("z_map", ref.z_score()), ("effect_size", np.ravel(ref.effect_size()))):
        img = nib.load(out / f"amb_{suffix}.dscalar.nii")
        assert img.header.get_axis(1) == cifti["bm"]
        np.testing.assert_allclose(np.asarray(img.dataobj)[0], expected.astype(np.float32), rtol=1e-5, atol=1e-5)


def test_cli_cifti_report_with_and_without_mesh(cifti, tmp_path):
    store = tmp_path / "fit.zarr"
    assert main(["fit", cifti["path"], "--events", cifti["events"], "--t-r", str(T_R), "-o", str(store),
                 "--no-progress"]) == 0
    plain = tmp_path / "plain.html"
    assert main(["report", str(store), "a - b", "--height-control", "none", "--threshold", "2",
                 "-o", str(plain), "--no-progress"]) == 0
    page = plain.read_text()
    for text in ("Design matrices", "Contrast matrix of a - b", "Histogram of the z values of a - b",
                 "Brain structures", "Strongest grayordinates", "CORTEX_LEFT", "CORTEX_RIGHT", "THALAMUS_LEFT",
                 "Surface panels need a mesh", "grayordinates in the mask"):
        assert text in page, text
    assert "Surface z map" not in page
    # the counts above threshold are those of the z map
    z = np.asarray(open_model(store).compute_contrast("a - b").dataobj)[0]
    assert f"z &gt; 2.000: {int((z >= 2).sum()):,} grayordinates" in page
    fs5 = load_fsaverage("fsaverage5")["pial"]
    drawn = tmp_path / "mesh.html"
    assert main(["report", str(store), "a - b", "--mesh", str(fs5.parts["left"].file_path),
                 str(fs5.parts["right"].file_path), "-o", str(drawn), "--no-progress"]) == 0
    page = drawn.read_text()
    assert "Surface z map of a - b" in page and "Surface panels need a mesh" not in page


def test_cifti_report_api_mesh_checks(cifti, tmp_path):
    from nilearn.conftest import _make_mesh

    from daskglm import FirstLevelModel
    from daskglm.errors import SurfaceInputError

    model = FirstLevelModel(t_r=T_R, noise_model="ols").fit(cifti["path"],
                                                            events=pd.read_csv(cifti["events"], sep="\t"))
    report = model.generate_report("a - b", mesh=load_fsaverage("fsaverage5")["pial"])
    report.save_as_html(tmp_path / "r.html")
    assert "Surface z map of a - b" in (tmp_path / "r.html").read_text()
    with pytest.raises(SurfaceInputError, match="vertices"):
        model.generate_report("a - b", mesh=_make_mesh())


def test_cli_cifti_bad_inputs(cifti, tmp_path, capsys):
    store = tmp_path / "fit.zarr"
    base = ["--events", cifti["events"], "--t-r", str(T_R), "--no-progress"]
    assert main(["fit", cifti["path"], "--smoothing-fwhm", "4", "-o", str(store), *base]) == 2
    assert "smoothing_fwhm needs a surface mesh" in _err_line(capsys)
    assert main(["fit", cifti["path"], "--mesh", "fsaverage5", "-o", str(store), *base]) == 2
    assert "--mesh goes with GIfTI runs" in _err_line(capsys)
    keep = np.zeros((1, len(cifti["bm"])), np.float32)
    keep[0, ::3] = 1
    mask = tmp_path / "mask.dscalar.nii"
    cifti2.Cifti2Image(keep, header=(cifti2.ScalarAxis(["mask"]), cifti["bm"])).to_filename(mask)
    assert main(["fit", cifti["path"], "--mask", str(mask), "-o", str(store), *base]) == 0
    assert open_model(store).n_elements_ == int(keep.sum())
    capsys.readouterr()
    assert main(["report", str(store), "a - b", "--mesh", cifti["path"], cifti["path"], "-o",
                 str(tmp_path / "r.html"), "--no-progress"]) == 2
    assert "mesh" in _err_line(capsys)
