"""daskglm.SecondLevelModel against nilearn 0.14.1: images, tables, models and study stores."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import FirstLevelModel as NilearnFLM
from nilearn.glm.second_level import SecondLevelModel as NilearnSLM
from scipy.ndimage import gaussian_filter

import daskglm
from daskglm import SecondLevelModel
from daskglm.data.fiac import make_fiac_like
from daskglm.errors import GroupInputError, StoreError
from daskglm.studies.subjects import fit_subjects, open_subject
from tests.conftest import load_named_design

N = 12
SHAPE = (9, 10, 8)
OUTPUTS = ("z_score", "stat", "p_value", "effect_size", "effect_variance")


def _maps(n=N, seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    imgs = [nib.Nifti1Image((gaussian_filter(rng.standard_normal(shape), 1) * 2 + 0.3) * mask, affine)
            for _ in range(n)]
    return imgs, nib.Nifti1Image(mask.astype(np.uint8), affine), rng


def _designs(rng):
    half = N // 2
    return {
        "one-sample": (pd.DataFrame({"intercept": np.ones(N)}), "intercept"),
        "two-sample": (pd.DataFrame({"g1": [1.0] * half + [0.0] * half, "g2": [0.0] * half + [1.0] * half}),
                       "g1 - g2"),
        "covariates": (pd.DataFrame({"intercept": np.ones(N), "age": rng.standard_normal(N),
                                     "sex": rng.integers(0, 2, N).astype(float)}), "age"),
        "paired": (pd.concat([pd.DataFrame({"diff": [1.0] * half + [-1.0] * half}),
                              pd.DataFrame(np.vstack([np.eye(half)] * 2),
                                           columns=[f"s{i}" for i in range(half)])], axis=1), "diff"),
    }


def _assert_same(ours: dict, ref: dict, atol=1e-8, rtol=1e-7):
    for name in OUTPUTS:
        a, b = ours[name].get_fdata(), ref[name].get_fdata()
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, atol=atol, rtol=rtol, err_msg=name)
        assert ours[name].header["descrip"] == ref[name].header["descrip"]


@pytest.mark.parametrize("kind", ["one-sample", "two-sample", "covariates", "paired"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_images_match_nilearn(kind, with_mask):
    imgs, mask, rng = _maps()
    design, con = _designs(rng)[kind]
    params = {"mask_img": mask} if with_mask else {}
    ours = SecondLevelModel(**params).fit(imgs, design_matrix=design)
    ref = NilearnSLM(**params).fit(imgs, design_matrix=design)
    _assert_same(ours.compute_contrast(con, output_type="all"), ref.compute_contrast(con, output_type="all"))
    assert ours.n_elements_ == ref.n_elements_


def test_f_contrast_smoothing_and_other_input_forms(tmp_path):
    imgs, mask, rng = _maps(seed=1)
    design, _ = _designs(rng)["covariates"]
    con = np.eye(3)[1:]
    ref = NilearnSLM(smoothing_fwhm=3.0).fit(imgs, design_matrix=design).compute_contrast(con, output_type="all")
    four_d = nib.concat_images(imgs)
    paths = []
    for i, img in enumerate(imgs):
        paths.append(str(tmp_path / f"m{i}.nii.gz"))
        img.to_filename(paths[-1])
    table = pd.DataFrame({"subject_label": [f"sub-{i:02d}" for i in range(N)], "map_name": "x",
                          "effects_map_path": paths})
    for source in (four_d, paths, pd.Series(paths)):
        ours = SecondLevelModel(smoothing_fwhm=3.0).fit(source, design_matrix=design)
        _assert_same(ours.compute_contrast(con, output_type="all"), ref)
    one_row_f = {"second_level_contrast": [0, 1, 0], "second_level_stat_type": "F", "output_type": "all"}
    _assert_same(SecondLevelModel().fit(imgs, design_matrix=design).compute_contrast(**one_row_f),
                 NilearnSLM().fit(imgs, design_matrix=design).compute_contrast(**one_row_f))  # 4-D effect
    ours = SecondLevelModel().fit(table.iloc[::-1], design_matrix=design)  # sorted by label, as nilearn
    ref_table = NilearnSLM().fit(table.iloc[::-1], design_matrix=design)
    _assert_same(ours.compute_contrast("age", first_level_contrast="x", output_type="all"),
                 ref_table.compute_contrast("age", first_level_contrast="x", output_type="all"))


def test_blockwise_graph_is_lazy_and_block_independent(monkeypatch):
    imgs, mask, rng = _maps(seed=2)
    design, con = _designs(rng)["covariates"]
    model = SecondLevelModel(mask_img=mask).fit(imgs, design_matrix=design)
    full = model.compute_contrast(con, output_type="all")
    import daskglm.group.graph as graph

    monkeypatch.setattr(graph, "BLOCK_ELEMENTS", 16 * N)  # -> 1024-voxel blocks: several blocks
    monkeypatch.setattr(graph, "voxel_block_size", lambda n: 64)
    graph = model.contrast_graph(con)
    assert len(graph.packed.chunks[1]) > 1 and graph.q == 1
    _assert_same(model.compute_contrast(con, output_type="all"), full, atol=1e-12)


# ------------------------------------------------------------------ stores
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Six one-run subjects fitted (OLS) into a study store, and their inputs."""
    root = tmp_path_factory.mktemp("study")
    subjects, runs = {}, {}
    for i in range(6):
        data = make_fiac_like(root / f"d{i}", shape=(10, 12, 10), n_scans=60, n_runs=1, seed=20 + i,
                              compress=False)
        design = load_named_design(data["design_matrix1"])
        subjects[f"{i + 1:02d}"] = {"run_imgs": [data["func1"]], "design_matrices": [design]}
        runs[f"{i + 1:02d}"] = (data["func1"], design)
    mask = data["mask"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_subjects(subjects, root / "study.zarr", model_params={"mask_img": mask, "noise_model": "ols"},
                              progress=False, raise_on_error=True)
    return {"store": result.store, "runs": runs, "mask": mask, "contrast": design.columns[0]}


def test_store_and_models_match_nilearn(study):
    con = study["contrast"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nl_models = [NilearnFLM(mask_img=study["mask"], noise_model="ols", subject_label=f"sub-{s}").fit(
            run, design_matrices=design) for s, (run, design) in study["runs"].items()]
        ref = NilearnSLM().fit(nl_models).compute_contrast(first_level_contrast=con, output_type="all")
        from_store = SecondLevelModel().fit(study["store"])
        ours = from_store.compute_contrast(first_level_contrast=con, output_type="all")
    _assert_same(ours, ref, atol=1e-4)  # nilearn's first level computes on the float32 runs
    assert list(from_store.design_matrix_.index) == list(range(6))
    # the same maps from a list of daskglm models, and from nilearn's models given to daskglm
    models = [open_subject(study["store"], s) for s in study["runs"]]
    for m, s in zip(models, study["runs"]):
        m.subject_label = f"sub-{s}"
    _assert_same(SecondLevelModel().fit(models).compute_contrast(first_level_contrast=con, output_type="all"),
                 ours, atol=1e-12)
    _assert_same(SecondLevelModel().fit(nl_models).compute_contrast(first_level_contrast=con, output_type="all"),
                 ref, atol=1e-10)


def test_store_subjects_confounds_and_mask(study):
    con = study["contrast"]
    chosen = ["01", "sub-03", "04", "06"]
    confounds = pd.DataFrame({"subject_label": ["sub-01", "sub-03", "sub-04", "sub-06"],
                              "age": [30.0, 41.0, 25.0, 52.0]})
    models = [open_subject(study["store"], s) for s in chosen]
    imgs = [m.compute_contrast(con, output_type="effect_size") for m in models]
    design = pd.DataFrame({"age": confounds["age"], "intercept": 1.0})
    ref = NilearnSLM(mask_img=study["mask"]).fit(imgs, design_matrix=design)
    ours = SecondLevelModel(mask_img=study["mask"]).fit(study["store"], confounds=confounds, subjects=chosen)
    assert list(ours.design_matrix_.columns) == ["age", "intercept"]
    _assert_same(ours.compute_contrast("age", first_level_contrast=con, output_type="all"),
                 ref.compute_contrast("age", output_type="all"), atol=1e-6)
    with pytest.raises(StoreError, match="not complete subjects"):
        SecondLevelModel().fit(study["store"], subjects=["01", "99"])
    with pytest.raises(GroupInputError, match="first_level_contrast is mandatory"):
        ours.compute_contrast("age")


def test_report_and_errors(study, tmp_path):
    imgs, mask, rng = _maps(seed=3)
    design, _ = _designs(rng)["one-sample"]
    model = SecondLevelModel(mask_img=mask).fit(imgs, design_matrix=design)
    report = model.generate_report(contrasts=["intercept"], height_control=None, threshold=2.0)
    html = report.get_standalone_html() if hasattr(report, "get_standalone_html") else str(report)
    assert "intercept" in html
    with pytest.raises(GroupInputError, match="require a design matrix"):
        SecondLevelModel().fit(imgs)
    with pytest.raises(GroupInputError, match="does not match the number of maps"):
        SecondLevelModel().fit(imgs[:-1], design_matrix=design)
    with pytest.raises(GroupInputError, match="File not found"):
        SecondLevelModel().fit(str(tmp_path / "nothing.zarr"))
    with pytest.raises(GroupInputError, match="not a daskglm study store"):
        SecondLevelModel().fit(str(tmp_path))
    with pytest.raises(ValueError, match="not fitted"):
        SecondLevelModel().compute_contrast()
    assert daskglm.SecondLevelModel is SecondLevelModel


def test_cli_group(study, tmp_path, capsys):
    from daskglm.cli import main

    con = study["contrast"]
    out = tmp_path / "group"
    design = tmp_path / "design.tsv"
    pd.DataFrame({"intercept": np.ones(6), "age": np.arange(6.0)}).to_csv(design, sep="\t", index=False)
    status = main(["group", study["store"], "--first-level-contrast", con, "--design", str(design),
                   "--contrast", "intercept", "--permutations", "20", "--tfce", "--cluster-threshold", "2.3",
                   "-o", str(out), "--no-progress"])
    assert status == 0, capsys.readouterr().err
    assert "6 subjects" in capsys.readouterr().out
    ref = SecondLevelModel().fit(study["store"], design_matrix=pd.read_csv(design, sep="\t"))
    z = ref.compute_contrast("intercept", first_level_contrast=con)
    np.testing.assert_allclose(nib.load(out / "intercept_z_map.nii.gz").get_fdata(), z.get_fdata(), atol=1e-6)
    for key in ("t", "logp_max_t", "tfce", "logp_max_tfce", "size", "logp_max_size", "mass", "logp_max_mass"):
        assert (out / f"intercept_perm_{key}.nii.gz").exists(), key
    assert (out / "report.html").stat().st_size > 1000 and (out / "design_matrix.tsv").exists()
    assert main(["group", str(tmp_path / "none.zarr"), "--first-level-contrast", con, "-o", str(out)]) != 0
    assert main(["group", study["store"], "--first-level-contrast", con, "--tfce", "-o", str(out)]) != 0


def _group_cli(study, out, *extra) -> None:
    from daskglm.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["group", study["store"], "--first-level-contrast", study["contrast"], "-o", str(out),
                     "--no-progress", *extra]) == 0


def test_cli_group_report_shows_this_runs_permutation_maps_only(study, tmp_path):
    """A rerun into the same directory without permutations: the report has none (was: the stale files)."""
    out = tmp_path / "group"
    _group_cli(study, out, "--permutations", "10", "--tfce")
    assert "TFCE, FWE" in (out / "report.html").read_text(encoding="utf-8")
    _group_cli(study, out)
    assert (out / "intercept_perm_logp_max_tfce.nii.gz").exists()  # the first run's maps stay on disk
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "TFCE, FWE" not in html and "Voxel-level FWE" not in html


def test_cli_two_sided_cluster_threshold_is_z_on_both_sides(study, tmp_path):
    """--two-sided --cluster-threshold Z forms clusters where |t| exceeds the t of one-sided p = sf(Z)."""
    from scipy import stats

    df = 6 - 1  # six subjects, intercept only
    t = SecondLevelModel().fit(study["store"]).compute_contrast(first_level_contrast=study["contrast"],
                                                                output_type="stat").get_fdata()

    def cut(z, p_scale=1.0):
        return stats.t.isf(p_scale * stats.norm.sf(z), df)

    # a z whose cut leaves voxels between it and the halved-p cut (nilearn's two-sided reading of sf(Z))
    z = next(z for z in np.arange(1.5, 4.0, 0.1) if ((np.abs(t) > cut(z)) & (np.abs(t) <= cut(z, 0.5))).sum() > 3)
    out = tmp_path / "group"
    _group_cli(study, out, "--permutations", "10", "--two-sided", "--cluster-threshold", f"{z:.6f}")
    t_map = nib.load(out / "intercept_perm_t.nii.gz").get_fdata()
    np.testing.assert_allclose(t_map, t, atol=1e-6)
    in_clusters = nib.load(out / "intercept_perm_size.nii.gz").get_fdata() > 0
    np.testing.assert_array_equal(in_clusters, np.abs(t_map) > cut(float(f"{z:.6f}")))


def test_contrast_graph_computes_nothing(study):
    """The group graph is lazy: first-level contrasts of the stores included."""
    import dask
    import dask.array as da

    from tests.conftest import _raising_scheduler

    model = SecondLevelModel(mask_img=study["mask"]).fit(study["store"], variance_input="first_level")
    with dask.config.set(scheduler=_raising_scheduler):
        graph = model.contrast_graph(first_level_contrast=study["contrast"])
    assert isinstance(graph.packed, da.Array) and graph.Y.shape == (6, model.n_elements_)
    assert graph.packed.shape == (graph.q + 5, model.n_elements_)  # effect, variance, stat, p, z, between variance


def test_permutations_from_a_store_match_nilearn(study):
    """non_parametric_inference on a store = nilearn's on the subjects' effect images (same draws)."""
    from nilearn.glm.second_level import non_parametric_inference as nilearn_npi

    from daskglm import non_parametric_inference

    con = study["contrast"]
    imgs = [open_subject(study["store"], s).compute_contrast(con, output_type="effect_size") for s in study["runs"]]
    design = pd.DataFrame({"intercept": np.ones(6)})
    kwargs = {"design_matrix": design, "mask": study["mask"], "n_perm": 50, "random_state": 4, "threshold": 0.01}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = non_parametric_inference(study["store"], first_level_contrast=con, **kwargs)
        ref = nilearn_npi(imgs, **kwargs)
    # with 6 subjects there are only 32 distinct sign patterns, so some permuted maxima tie with
    # the observed t to rounding: such a voxel may move by one rank (log10 step) either way
    for key in ref:
        a, b = ours[key].get_fdata(), ref[key].get_fdata()
        close = np.isclose(a, b, atol=1e-6)
        assert close.mean() >= 0.995, key
        if key == "t":
            assert close.all()
