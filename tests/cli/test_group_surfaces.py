"""``daskglm group`` and ``SecondLevelModel.fit(store)`` on study stores of surface and CIFTI fits.

Small study stores (three subjects, written by ``fit_subjects``, the writer
``daskglm bids`` uses) of GIfTI-mesh fits and of CIFTI fits.  The group
maps are checked against a direct numpy one-sample t test on the subjects'
stored first-level effects (z from the t distribution's tails), and are
written in the fits' own format: one ``.func.gii`` per hemisphere, or a
``.dscalar.nii`` over the fits' brain models.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel import cifti2
from scipy import stats

import daskglm
from daskglm.cli import main
from daskglm.data.bids import cifti_brain_models
from tests.conftest import quiet

SUBJECTS = ("01", "02", "03")
N_SCANS = 24
CONTRAST = "task"


def _design() -> pd.DataFrame:
    return pd.DataFrame({"task": np.tile([0.0, 0.0, 1.0, 1.0], N_SCANS // 4), "constant": np.ones(N_SCANS)})


def _strip_mesh(n: int):
    from nilearn.surface import InMemoryMesh

    half = n // 2
    coords = np.c_[np.r_[np.arange(half), np.arange(n - half)], np.r_[np.zeros(half), np.ones(n - half)],
                   np.zeros(n)].astype(float)
    faces = [[i, i + 1, half + i] for i in range(half - 1)] + [[i + 1, half + i + 1, half + i]
                                                                for i in range(half - 1)]
    return InMemoryMesh(coords, np.array(faces))


def _write_surf(mesh, path) -> str:
    img = nib.gifti.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(mesh.coordinates.astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
        nib.gifti.GiftiDataArray(mesh.faces.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE")])
    nib.save(img, path)
    return str(path)


def _one_sample_z(effects: np.ndarray) -> np.ndarray:
    n = effects.shape[0]
    t = effects.mean(axis=0) / (effects.std(axis=0, ddof=1) / np.sqrt(n))
    return np.where(t > 0, stats.norm.isf(stats.t.sf(t, n - 1)), stats.norm.ppf(stats.t.cdf(t, n - 1)))


@pytest.fixture(scope="module")
def cifti_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifti_study")
    bm = cifti_brain_models(n_vertices=60)
    rng = np.random.default_rng(0)
    X = _design()
    subjects = {}
    for sid in SUBJECTS:
        data = 100 + rng.normal(size=(N_SCANS, len(bm))) + np.outer(X["task"], rng.uniform(0, 1, len(bm)))
        header = cifti2.Cifti2Header.from_axes((cifti2.SeriesAxis(0, 2.0, N_SCANS), bm))
        path = folder / f"sub-{sid}_bold.dtseries.nii"
        cifti2.Cifti2Image(data.astype(np.float32), header=header).to_filename(path)
        subjects[sid] = {"run_imgs": str(path), "design_matrices": X}
    store = folder / "study.zarr"
    quiet(daskglm.fit_subjects, subjects, store, model_params={"noise_model": "ols"}, progress=False,
          raise_on_error=True)
    mesh = [_write_surf(_strip_mesh(60), folder / f"{h}.surf.gii") for h in ("L", "R")]
    return {"store": str(store), "brain_models": bm, "mesh": mesh}


@pytest.fixture(scope="module")
def surface_store(tmp_path_factory):
    from nilearn.surface import PolyMesh, SurfaceImage

    folder = tmp_path_factory.mktemp("surface_study")
    mesh = PolyMesh(left=_strip_mesh(40), right=_strip_mesh(30))
    rng = np.random.default_rng(1)
    X = _design()
    subjects = {}
    for sid in SUBJECTS:
        data = {p: 100 + rng.normal(size=(mesh.parts[p].n_vertices, N_SCANS)) + 0.7 * X["task"].to_numpy()
                for p in ("left", "right")}
        subjects[sid] = {"run_imgs": SurfaceImage(mesh=mesh, data=data), "design_matrices": X}
    store = folder / "study.zarr"
    quiet(daskglm.fit_subjects, subjects, store, model_params={"noise_model": "ols"}, progress=False,
          raise_on_error=True)
    return {"store": str(store), "mesh": mesh}


def _effects(store: str) -> np.ndarray:
    rows = []
    for sid in SUBJECTS:
        img = quiet(daskglm.open_subject(store, sid).compute_contrast, CONTRAST, output_type="effect_size")
        if isinstance(img, nib.Cifti2Image):
            rows.append(np.asarray(img.dataobj, dtype=np.float64)[0])
        else:
            rows.append(np.concatenate([np.ravel(img.data.parts[p]) for p in img.mesh.parts]))
    return np.stack(rows)


def test_second_level_model_reads_a_cifti_study_store(cifti_store):
    model = daskglm.SecondLevelModel().fit(cifti_store["store"], subjects=["01", "02", "03"])
    z = model.compute_contrast(first_level_contrast=CONTRAST)
    assert isinstance(z, nib.Cifti2Image) and z.header.get_axis(1) == cifti_store["brain_models"]
    ref = _one_sample_z(_effects(cifti_store["store"]))
    assert (np.abs(np.asarray(z.dataobj)[0] - ref) < 1e-3).mean() >= 0.999


def test_cli_group_writes_dscalars_for_a_cifti_store(cifti_store, tmp_path, capsys):
    out = tmp_path / "group"
    argv = ["group", cifti_store["store"], "-o", str(out), "--first-level-contrast", CONTRAST, "--no-progress",
            "--permutations", "20", "--tfce", "--mesh", *cifti_store["mesh"]]
    assert quiet(main, argv) == 0
    assert "grayordinates" in capsys.readouterr().out
    z = nib.load(out / "intercept_z_map.dscalar.nii")
    assert z.header.get_axis(1) == cifti_store["brain_models"]
    ref = _one_sample_z(_effects(cifti_store["store"]))
    assert (np.abs(np.asarray(z.dataobj)[0] - ref) < 1e-3).mean() >= 0.999
    for key in ("t", "logp_max_t", "tfce", "logp_max_tfce"):
        img = nib.load(out / f"intercept_perm_{key}.dscalar.nii")
        assert img.header.get_axis(1) == cifti_store["brain_models"]
    # report.html: the z map's per-structure peaks, the FWE panels, the cortex drawn on --mesh
    page = (out / "report.html").read_text()
    z_values = np.asarray(z.dataobj, dtype=np.float64)[0]
    for name, sl, _ in cifti_store["brain_models"].iter_structures():
        peak = z_values[sl][np.argmax(z_values[sl])]
        assert f"<td>{name.removeprefix('CIFTI_STRUCTURE_')}</td>" in page and f"<td>{peak:.2f}</td>" in page
    assert "Voxel-level FWE (max t)" in page and "TFCE, FWE" in page and "-log10 p(FWE)" in page
    assert "Surface z map of intercept" in page and "Surface panels need a mesh" not in page


def test_group_report_of_cifti_maps_without_a_mesh_says_so(cifti_store, tmp_path):
    from daskglm.reporting.group_report import make_group_report

    model = daskglm.SecondLevelModel().fit(cifti_store["store"], subjects=["01", "02", "03"])
    html = quiet(make_group_report, model, first_level_contrast=CONTRAST).get_standalone()
    assert "Surface panels need a mesh" in html and "grayordinates in" in html
    z = np.asarray(model.compute_contrast(first_level_contrast=CONTRAST).dataobj, dtype=np.float64)[0]
    assert f"<td>{z.max():.2f}</td>" in html  # the strongest structure's peak z


def test_cli_group_writes_giftis_for_a_surface_store(surface_store, tmp_path):
    out = tmp_path / "group"
    argv = ["group", surface_store["store"], "-o", str(out), "--first-level-contrast", CONTRAST,
            "--no-progress", "--permutations", "20", "--tfce"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert quiet(main, argv) == 0
    ref = _one_sample_z(_effects(surface_store["store"]))
    z = np.concatenate([np.asarray(nib.load(out / f"intercept_z_map_hemi-{h}.func.gii").darrays[0].data)
                        for h in ("L", "R")])
    assert z.shape == ref.shape and (np.abs(z - ref) < 1e-3).mean() >= 0.999
    for key in ("logp_max_t", "tfce", "logp_max_tfce"):
        assert (out / f"intercept_perm_{key}_hemi-L.func.gii").exists()
        assert (out / f"intercept_perm_{key}_hemi-R.func.gii").exists()


def test_mixed_effects_read_the_stores_first_level_variances(cifti_store, surface_store):
    for store in (cifti_store["store"], surface_store["store"]):
        model = daskglm.SecondLevelModel().fit(store, variance_input="first_level")
        z = model.compute_contrast(first_level_contrast=CONTRAST)
        values = np.asarray(z.dataobj)[0] if isinstance(z, nib.Cifti2Image) else np.concatenate(
            [np.ravel(z.data.parts[p]) for p in z.mesh.parts])
        assert np.isfinite(values).all() and values.size == model.n_elements_
        assert type(model.between_variance_) is type(z)


@pytest.mark.parametrize("mesh", ["none", "missing", "wrong"])
def test_cli_group_checks_the_cifti_mesh_before_writing_maps(cifti_store, tmp_path, capsys, mesh):
    """--tfce on CIFTI maps: no, absent or mismatched --mesh is refused before any map is written."""
    if mesh == "wrong":
        given = ["--mesh", *[_write_surf(_strip_mesh(62), tmp_path / f"{h}.surf.gii") for h in "LR"]]
    else:
        given = [] if mesh == "none" else ["--mesh", str(tmp_path / "L.surf.gii"), str(tmp_path / "R.surf.gii")]
    out = tmp_path / "group"
    argv = ["group", cifti_store["store"], "-o", str(out), "--first-level-contrast", CONTRAST, "--no-progress",
            "--permutations", "10", "--tfce", *given]
    assert quiet(main, argv) != 0
    err = capsys.readouterr().err
    assert {"none": "--mesh", "missing": "does not exist", "wrong": "62 vertices"}[mesh] in err
    assert not out.exists() or not list(out.glob("*.dscalar.nii"))
