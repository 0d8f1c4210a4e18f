"""nilearn's own report and BIDS writer on daskglm models ("only the import changes").

``nilearn.glm.save_glm_to_bids`` (and its old home ``nilearn.interfaces.bids``)
and ``nilearn.reporting.make_glm_report`` are called on fitted daskglm first-
and second-level models; the files written equal those written from nilearn's
own models fitted on the same data (the same names; the same design tables,
sidecars and cluster tables; the same maps to float32 precision), and the
reports show the contrasts and the design.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm import save_glm_to_bids
from nilearn.glm.first_level import FirstLevelModel as NilearnFirstLevelModel
from nilearn.glm.second_level import SecondLevelModel as NilearnSecondLevelModel
from nilearn.reporting import make_glm_report

from daskglm import FirstLevelModel, SecondLevelModel
from daskglm.data.fiac import make_fiac_like
from tests.conftest import load_named_designs, quiet

#: Written by both models and compared as text (the report's HTML and the figures are not).
TEXT_SUFFIXES = (".tsv", ".json")


@pytest.fixture(scope="module")
def bids_runs(tmp_path_factory):
    """Two small runs under BIDS names (nilearn names its outputs after them) and their designs."""
    root = tmp_path_factory.mktemp("nilearn_functions")
    data = make_fiac_like(root, shape=(8, 9, 8), n_scans=50, seed=3)
    runs = []
    for i in (1, 2):
        path = root / f"sub-01_task-fiac_run-{i}_bold.nii.gz"
        os.symlink(data[f"func{i}"], path)
        runs.append(str(path))
    return {"runs": runs, "designs": load_named_designs(data), "mask": data["mask"]}


def _contrasts(design: pd.DataFrame) -> dict:
    return {"first": "FirstSt", "effects": np.eye(design.shape[1])[:2]}  # a t and an F contrast


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}


def _assert_same_outputs(ours: Path, theirs: Path) -> None:
    mine, ref = _files(ours), _files(theirs)
    assert sorted(mine) == sorted(ref)
    n_maps = 0
    for name, path in mine.items():
        if name.endswith(".nii.gz"):
            a, b = nib.load(path), nib.load(ref[name])
            assert a.shape == b.shape, name
            np.testing.assert_allclose(a.affine, b.affine, err_msg=name)
            x, y = a.get_fdata(), b.get_fdata()
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=name)
            scale = max(np.nanmax(np.abs(y)), 1e-30)
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4 * scale, equal_nan=True, err_msg=name)
            n_maps += 1
        elif name.endswith(TEXT_SUFFIXES):
            if name.endswith("_clusters.tsv"):  # peak values at float precision
                pd.testing.assert_frame_equal(pd.read_csv(path, sep="\t"), pd.read_csv(ref[name], sep="\t"),
                                              check_exact=False, rtol=1e-4)
            elif name.endswith(".json"):
                assert json.loads(path.read_text()) == json.loads(ref[name].read_text()), name
            else:
                pd.testing.assert_frame_equal(pd.read_csv(path, sep="\t"), pd.read_csv(ref[name], sep="\t"))
    assert n_maps > 0


def _save(model, contrasts, out: Path, module=None, caught: list | None = None) -> Path:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")  # nilearn's own (deprecations, empty thresholded maps), kept aside
        (module or save_glm_to_bids)(model, contrasts, out_dir=out)
    if caught is not None:
        caught.extend(str(w.message) for w in record)
    return out


@pytest.fixture(scope="module")
def first_level_pair(bids_runs):
    kwargs = {"mask_img": bids_runs["mask"], "minimize_memory": False}  # nilearn's writer needs residuals_
    ours = FirstLevelModel(**kwargs).fit(bids_runs["runs"], design_matrices=bids_runs["designs"])
    theirs = quiet(NilearnFirstLevelModel(**kwargs).fit, bids_runs["runs"], design_matrices=bids_runs["designs"])
    return ours, theirs


def test_save_glm_to_bids_first_level_writes_nilearns_files(first_level_pair, bids_runs, tmp_path):
    from nilearn.interfaces.bids import save_glm_to_bids as old_home

    ours, theirs = first_level_pair
    contrasts = _contrasts(bids_runs["designs"][0])
    caught: list[str] = []
    out = _save(ours, contrasts, tmp_path / "ours", old_home, caught)  # the call, nilearn's redirect
    _assert_same_outputs(out, _save(theirs, contrasts, tmp_path / "nilearn"))
    # the report reuses the maps written (as nilearn's): the F contrast's note is given once, not again
    assert sum("approximate fixed effects" in m for m in caught) == 1, caught
    folder = out / "sub-01"
    assert (folder / "sub-01_task-fiac_run-2_stat-errorts_statmap.nii.gz").is_file()
    report = (folder / "report.html").read_text()  # the report of the saved contrasts (none passed to it)
    for name in contrasts:
        assert f"<h3>{name}</h3>" in report
    assert 'alt="Design matrix of run 2"' in report


def test_make_glm_report_first_level(first_level_pair, bids_runs):
    ours, _ = first_level_pair
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = make_glm_report(ours, {"first": "FirstSt"}, plot_type="glass")
    html = report.get_standalone()
    assert "<h3>first</h3>" in html and 'alt="Glass brain of first"' in html
    assert 'alt="Design matrix of run 1"' in html and 'alt="Analysis mask"' in html
    messages = [str(w.message) for w in caught]
    # nilearn's own: its deprecation, and 3.09 given by make_glm_report itself with height_control='fpr'
    assert all("make_glm_report will be deprecated" in m or "'threshold=3.09' is not used" in m
               for m in messages), messages
    assert (report.width, report.height) == (800, 800)  # the report_dims nilearn's make_glm_report passes


def test_first_level_interface_means_what_nilearn_s_does(first_level_pair):
    ours, theirs = first_level_pair
    assert str(ours) == str(theirs) == "First Level Model"
    assert ours._is_volume_glm() and ours._is_first_level_glm()
    assert ours._attributes_to_dict() == theirs._attributes_to_dict()
    for key in ("trial_types", "noise_model", "hrf_model", "drift_model", "run_imgs"):
        assert ours._reporting_data[key] == theirs._reporting_data[key], key
    assert ours._reporting_data["run_imgs"][1]["entities"] == {"sub": "01", "task": "fiac", "run": "2"}
    np.testing.assert_array_equal(ours._mask_img.get_fdata(), theirs._mask_img.get_fdata())


@pytest.fixture(scope="module")
def group_maps():
    rng = np.random.default_rng(0)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    mask = np.zeros((9, 10, 8), np.uint8)
    mask[2:7, 2:8, 2:6] = 1
    maps = [nib.Nifti1Image((rng.standard_normal(mask.shape) + 0.8).astype("f4"), affine) for _ in range(6)]
    design = pd.DataFrame({"intercept": np.ones(6), "age": np.linspace(-1, 1, 6)})
    return maps, design, nib.Nifti1Image(mask, affine)


def test_save_glm_to_bids_second_level_writes_nilearns_files(group_maps, tmp_path):
    maps, design, mask = group_maps
    contrasts = {"mean": "intercept", "age": np.array([0.0, 1.0])}
    written = []
    for cls, name in ((SecondLevelModel, "ours"), (NilearnSecondLevelModel, "nilearn")):
        model = cls(mask_img=mask, minimize_memory=False).fit(maps, design_matrix=design)
        written.append(_save(model, contrasts, tmp_path / name))
    _assert_same_outputs(*written)
    assert "contrast-mean_stat-z_statmap.nii.gz" in _files(written[0] / "group")


def test_make_glm_report_second_level(group_maps):
    maps, design, mask = group_maps
    model = SecondLevelModel(mask_img=mask).fit(maps, design_matrix=design)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        html = make_glm_report(model, {"mean": "intercept", "age": "age"}).get_standalone()
    assert "mean" in html and "intercept" in html and "Second Level Model" in html
    # 'age' has no survivor: nilearn's drawing noise about it (and numpy's about the mask) is not shown
    messages = [str(w.message) for w in caught]
    assert all("make_glm_report will be deprecated" in m or "'threshold=3.09' is not used" in m
               for m in messages), messages


# ------------------------------------------------------------------ surfaces
def _grid_mesh(n: int, x0: float):
    from nilearn.surface import InMemoryMesh

    xs, ys = np.meshgrid(np.arange(n), np.arange(n))
    coords = np.c_[xs.ravel() * 2.0 + x0, ys.ravel() * 2.0, np.sin(xs.ravel()) + np.cos(ys.ravel())]
    faces = [[a, a + 1, a + n] for a in range(n * n - n) if a % n < n - 1] + \
            [[a + 1, a + n + 1, a + n] for a in range(n * n - n) if a % n < n - 1]
    return InMemoryMesh(coords, np.array(faces))


def test_save_glm_to_bids_surface_first_level(tmp_path):
    """A SurfaceImage fit: nilearn's per-hemisphere GIfTI names, holding nilearn's maps.

    (nilearn's own writer fails drawing its report of so small a mesh, so the
    reference is nilearn's ``compute_contrast`` on the same run.)
    """
    from nilearn.glm.first_level import make_first_level_design_matrix
    from nilearn.surface import PolyMesh, SurfaceImage

    mesh = PolyMesh(left=_grid_mesh(8, -40.0), right=_grid_mesh(8, 20.0))
    rng = np.random.default_rng(0)
    events = pd.DataFrame({"onset": np.arange(4, 70, 8.0), "duration": 1.0,
                           "trial_type": np.tile(["a", "b"], 5)[:9]})
    regressor = make_first_level_design_matrix(np.arange(40) * 2.0, events)["a"].to_numpy()
    effect = np.r_[np.full(32, 10.0), np.zeros(32)]
    run = SurfaceImage(mesh=mesh, data={p: 100 + rng.standard_normal((64, 40)) + np.outer(effect, regressor)
                                        for p in ("left", "right")})
    params = {"t_r": 2.0, "minimize_memory": False}
    model = FirstLevelModel(**params).fit(run, events=events)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_glm_to_bids(model, {"ab": "a - b"}, out_dir=tmp_path, prefix="sub-01")
        reference = NilearnFirstLevelModel(**params).fit(run, events=events).compute_contrast(
            "a - b", output_type="all")
    folder = tmp_path / "sub-01"
    for stat, key in (("z", "z_score"), ("t", "stat"), ("effect", "effect_size"), ("p", "p_value")):
        for hemi, part in (("L", "left"), ("R", "right")):
            path = folder / f"sub-01_hemi-{hemi}_den-64_contrast-ab_stat-{stat}_statmap.gii"
            written = np.asarray(nib.load(path).darrays[0].data, dtype=float)
            np.testing.assert_allclose(written, np.asarray(reference[key].data.parts[part], dtype=float),
                                       rtol=1e-5, atol=1e-6, err_msg=path.name)
    assert (folder / "sub-01_hemi-L_den-64_stat-errorts_statmap.gii").is_file()
    assert "Density" in json.loads((folder / "sub-01_statmap.json").read_text())
    assert "<h3>ab</h3>" in (folder / "sub-01_report.html").read_text()


def test_save_glm_to_bids_refuses_a_cifti_fit_saying_what_to_use(tmp_path):
    from daskglm.io.cifti import write_cifti_run
    from tests.space.test_cifti import N_SCANS, T_R, brain_models, design, simulate

    models = brain_models()
    X = design(0)
    Y = simulate(X, len(models), 3)
    path = write_cifti_run(tmp_path / "run.dtseries.nii", models, N_SCANS, T_R, lambda a, b: Y[:, a:b],
                           dtype=np.float64)
    model = FirstLevelModel(t_r=T_R).fit(path, design_matrices=X)
    with pytest.raises(ValueError, match="not CIFTI.*save_bids_derivatives"):
        save_glm_to_bids(model, "a - b", out_dir=tmp_path / "out", prefix="sub-01")


def test_report_without_contrasts_warns_as_nilearn(bids_runs):
    model = FirstLevelModel(mask_img=bids_runs["mask"], noise_model="ols").fit(
        bids_runs["runs"][0], design_matrices=bids_runs["designs"][0])
    with pytest.warns(UserWarning, match="No contrast passed during report generation"):
        page = model.generate_report().get_standalone()
    assert 'alt="Design matrix of run 1"' in page and '<article class="contrast"' not in page
