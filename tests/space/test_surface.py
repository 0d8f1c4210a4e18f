"""SurfaceImage runs (fsaverage5 mesh shipped with nilearn) against nilearn 0.14.1's FirstLevelModel."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_fsaverage
from nilearn.glm.first_level import FirstLevelModel as NilearnFLM
from nilearn.maskers import SurfaceMasker
from nilearn.surface import SurfaceImage
from nilearn.surface.utils import check_polymesh_equal

from daskglm import FirstLevelModel
from daskglm.errors import SurfaceInputError
from daskglm.kernels.mesh import MeshMasker, SurfacePart

N_SCANS, T_R = 60, 2.0


@pytest.fixture(scope="module")
def mesh():
    return load_fsaverage("fsaverage5")["pial"]


def events(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    onsets = np.sort(rng.uniform(0, (N_SCANS - 8) * T_R, 10))
    return pd.DataFrame({"onset": onsets, "duration": 1.0, "trial_type": np.tile(["a", "b"], 5)})


def surface_run(mesh, seed: int, dtype=np.float64) -> SurfaceImage:
    """AR(1) noise around a baseline, with an effect of 'a' on a patch of each hemisphere."""
    rng = np.random.default_rng(seed)
    data = {}
    for part, m in mesh.parts.items():
        n = m.n_vertices
        rho = rng.uniform(-0.1, 0.5, n)
        y = rng.standard_normal((N_SCANS, n))
        for t in range(1, N_SCANS):
            y[t] += rho * y[t - 1]
        y[10:20, : n // 10] += 3.0
        data[part] = (100 + 20 * rng.uniform(size=n) + y).T.astype(dtype)
    return SurfaceImage(mesh=mesh, data=data)


@pytest.fixture(scope="module")
def runs(mesh):
    return [surface_run(mesh, 1), surface_run(mesh, 2)]


def _values(img) -> np.ndarray:
    return np.concatenate([np.asarray(img.data.parts[p]).ravel() for p in img.mesh.parts])


def _both(runs, contrast="a - b", output_type="z_score", **params):
    evs = [events(i) for i in range(len(runs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnFLM(t_r=T_R, **params).fit(runs, events=evs).compute_contrast(contrast, output_type=output_type)
    model = FirstLevelModel(t_r=T_R, **params).fit(runs, events=evs)
    return model, model.compute_contrast(contrast, output_type=output_type), ref


@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_surface_maps_equal_nilearn(runs, noise_model):
    model, got, ref = _both(runs, noise_model=noise_model, output_type="all")
    for name in ("z_score", "effect_size", "effect_variance", "stat"):
        assert isinstance(got[name], SurfaceImage)
        assert list(got[name].mesh.parts) == ["left", "right"]
        check_polymesh_equal(got[name].mesh, ref[name].mesh)
        a, b = _values(got[name]), _values(ref[name])
        close = np.isclose(a, b, rtol=1e-6, atol=1e-6)
        assert close.mean() >= 0.999, (name, np.abs(a - b).max())
    assert model.n_elements_ == 2 * 10242
    assert isinstance(model.masker_, SurfaceMasker) and model.masker_.n_elements_ == 2 * 10242


def test_surface_smoothing_equals_nilearn(runs):
    _, got, ref = _both(runs[:1], smoothing_fwhm=8.0)
    a, b = _values(got), _values(ref)
    assert np.isclose(a, b, rtol=1e-6, atol=1e-6).mean() >= 0.999, np.abs(a - b).max()
    _, unsmoothed, _ = _both(runs[:1])
    assert not np.allclose(a, _values(unsmoothed))


def test_mesh_masker_smoothing_equals_nilearn_smooth_img(mesh, runs):
    from nilearn.image import smooth_img

    img = runs[0]
    parts = [SurfacePart(m.n_vertices, m.coordinates, m.faces) for m in mesh.parts.values()]
    mask = np.ones(sum(p.n_elements for p in parts), bool)
    masker = MeshMasker(mask, parts, smoothing_fwhm=12.0)
    assert all(op is not None and op[1] >= 2 for op in masker.operators)
    scans = np.concatenate([np.asarray(img.data.parts[p])[:, :5].T for p in mesh.parts], axis=1)
    ref = smooth_img(SurfaceImage(mesh=mesh, data={p: np.asarray(img.data.parts[p])[:, :5] for p in mesh.parts}), 12.0)
    expected = np.concatenate([np.asarray(ref.data.parts[p]).T for p in mesh.parts], axis=1)
    np.testing.assert_allclose(masker.transform(scans), expected, rtol=1e-10)


def test_surface_masks(runs, mesh):
    rng = np.random.default_rng(0)
    keep = {p: rng.uniform(size=m.n_vertices) > 0.3 for p, m in mesh.parts.items()}
    mask_img = SurfaceImage(mesh=mesh, data=keep)
    _, got, ref = _both(runs, mask_img=mask_img)
    a, b = _values(got), _values(ref)
    inside = np.concatenate([keep[p] for p in mesh.parts])
    assert np.all(a[~inside] == 0)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    masker = SurfaceMasker(mask_img=mask_img).fit()
    _, got_m, _ = _both(runs, mask_img=masker)
    np.testing.assert_array_equal(_values(got_m), a)


def test_implicit_mask_drops_non_finite_vertices(mesh):
    run = surface_run(mesh, 3)
    run.data.parts["left"][5, 7] = np.nan
    with pytest.warns(UserWarning, match="Non-finite"):
        model = FirstLevelModel(t_r=T_R).fit(run, events=events(0))
    assert model.n_elements_ == 2 * 10242 - 1
    z = model.compute_contrast("a")
    assert np.asarray(z.data.parts["left"])[5] == 0


def test_bad_surface_inputs(runs, mesh):
    one_scan = SurfaceImage(mesh=mesh, data={p: np.ones(m.n_vertices) for p, m in mesh.parts.items()})
    with pytest.raises(SurfaceInputError, match="one sample per vertex"):
        FirstLevelModel(t_r=T_R).fit(one_scan, events=events(0))
    other = load_fsaverage("fsaverage5")["inflated"]
    moved = SurfaceImage(mesh=other, data={p: np.asarray(runs[1].data.parts[p]) for p in other.parts})
    with pytest.raises(SurfaceInputError, match="different surface geometry"):
        FirstLevelModel(t_r=T_R).fit([runs[0], moved], events=[events(0), events(1)])
    with pytest.raises(TypeError, match="scalar"):
        FirstLevelModel(t_r=T_R, smoothing_fwhm=[4, 4, 4]).fit(runs[0], events=events(0))
    bad_mask = SurfaceImage(mesh=other, data={p: np.ones(m.n_vertices) for p, m in other.parts.items()})
    with pytest.raises(SurfaceInputError, match="mesh"):
        FirstLevelModel(t_r=T_R, mask_img=bad_mask).fit(runs[0], events=events(0))
    empty = SurfaceImage(mesh=mesh, data={p: np.zeros(m.n_vertices) for p, m in mesh.parts.items()})
    with pytest.raises(SurfaceInputError, match="empty"):
        FirstLevelModel(t_r=T_R, mask_img=empty).fit(runs[0], events=events(0))


@pytest.mark.parametrize("precision_weighted", [False, True])
def test_fixed_effects_on_surface_maps(runs, precision_weighted):
    from nilearn.glm import compute_fixed_effects as nilearn_fixed_effects

    from daskglm import compute_fixed_effects

    evs = [events(0), events(1)]
    maps = [FirstLevelModel(t_r=T_R).fit(r, events=e).compute_contrast("a", output_type="all")
            for r, e in zip(runs, evs)]
    cons = [m["effect_size"] for m in maps]
    vars_ = [m["effect_variance"] for m in maps]
    got = compute_fixed_effects(cons, vars_, precision_weighted=precision_weighted, dofs=[50, 60])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = nilearn_fixed_effects(cons, vars_, precision_weighted=precision_weighted, dofs=[50, 60])
    assert len(got) == 4
    for a, b in zip(got, ref):
        assert isinstance(a, SurfaceImage)
        np.testing.assert_allclose(_values(a), _values(b), rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="variance images"):
        compute_fixed_effects(cons, vars_[:1])


@pytest.mark.parametrize("encoding", ["GIFTI_ENCODING_B64GZ", "GIFTI_ENCODING_ASCII"])
def test_gifti_files_stream_scan_by_scan(runs, mesh, tmp_path, encoding, monkeypatch):
    import nibabel as nib
    from nibabel.gifti import GiftiDataArray, GiftiImage

    import daskglm.io.gifti as gifti_io
    from daskglm.io.gifti import GiftiRunSource

    run = runs[0]
    paths = {}
    for part in mesh.parts:
        data = np.asarray(run.data.parts[part], dtype=np.float32)
        darrays = [GiftiDataArray(data[:, t], intent="NIFTI_INTENT_TIME_SERIES", datatype="NIFTI_TYPE_FLOAT32",
                                  encoding=encoding) for t in range(data.shape[1])]
        paths[part] = tmp_path / f"{part}.func.gii"
        nib.save(GiftiImage(darrays=darrays), paths[part])
    source = GiftiRunSource(paths, mesh)
    assert source.shape == (2 * 10242, N_SCANS) and source.sequential
    decoded = []
    original = gifti_io._decode
    monkeypatch.setattr(gifti_io, "_decode", lambda *a: decoded.append(1) or original(*a))
    first = source.read(0, 3)
    assert len(decoded) == 2 * 3  # three scans of each hemisphere decoded, not the run
    expected = np.concatenate([np.asarray(run.data.parts[p], dtype=np.float32)[:, :3].T for p in mesh.parts], axis=1)
    np.testing.assert_array_equal(first, expected)
    loaded = SurfaceImage(mesh=mesh, data={p: np.asarray(run.data.parts[p], dtype=np.float32) for p in mesh.parts})
    z_files = FirstLevelModel(t_r=T_R).fit(source, events=events(0)).compute_contrast("a - b")
    z_image = FirstLevelModel(t_r=T_R).fit(loaded, events=events(0)).compute_contrast("a - b")
    # same numbers; only the summation order differs (one streamed pass vs tree-summed time chunks)
    np.testing.assert_allclose(_values(z_files), _values(z_image), rtol=1e-9, atol=1e-9)
    with pytest.raises(SurfaceInputError, match="parts"):
        GiftiRunSource({"left": paths["left"]}, mesh)


def test_gifti_single_2d_array_either_orientation(runs, mesh, tmp_path):
    """One 2-D DataArray per file: (time, vertex) as nilearn reads it, or (vertex, time)."""
    import nibabel as nib
    from nibabel.gifti import GiftiDataArray, GiftiImage
    from nilearn.surface import load_surf_data

    from daskglm.io.gifti import GiftiRunSource

    run = runs[0]
    expected = np.concatenate([np.asarray(run.data.parts[p], dtype=np.float32).T for p in mesh.parts], axis=1)
    for layout in ("time_vertex", "vertex_time"):
        paths = {}
        for part in mesh.parts:
            data = np.asarray(run.data.parts[part], dtype=np.float32)  # (vertex, time)
            array = data.T if layout == "time_vertex" else data
            paths[part] = tmp_path / f"{layout}_{part}.func.gii"
            nib.save(GiftiImage(darrays=[GiftiDataArray(array, datatype="NIFTI_TYPE_FLOAT32")]), paths[part])
        if layout == "time_vertex":  # what nilearn itself reads from such a file
            np.testing.assert_array_equal(load_surf_data(paths["left"]), np.asarray(run.data.parts["left"], np.float32))
        source = GiftiRunSource(paths, mesh)
        assert source.shape == (2 * 10242, N_SCANS)
        np.testing.assert_array_equal(source.read(0, N_SCANS), expected)
    nib.save(GiftiImage(darrays=[GiftiDataArray(np.zeros((7, 9), np.float32))]), tmp_path / "bad.func.gii")
    with pytest.raises(SurfaceInputError, match="7 x 9"):
        GiftiRunSource({"left": tmp_path / "bad.func.gii", "right": paths["right"]}, mesh)


def test_store_round_trip_references_the_standard_mesh(runs, tmp_path):
    import json

    from daskglm import open_model

    model = FirstLevelModel(t_r=T_R).fit(runs[0], events=events(0))
    z = model.compute_contrast("a - b")
    model.to_zarr(tmp_path / "fit.zarr")
    back = open_model(tmp_path / "fit.zarr")
    record = json.loads(back.results_.attrs["surface_geometry"])
    assert record["standard"] == ["fsaverage5", "pial"] and "mesh" not in record  # referenced, not copied
    z_back = back.compute_contrast("a - b")
    assert isinstance(z_back, SurfaceImage)
    np.testing.assert_array_equal(_values(z_back), _values(z))


def test_geometry_record_stores_other_meshes_as_arrays_and_checks_digests():
    import json

    from nilearn.conftest import _make_mesh

    from daskglm.io.gifti import SurfaceGeometry
    from daskglm.store.geometry import geometry_from_json, geometry_to_json, geometry_variables

    geometry = SurfaceGeometry(_make_mesh())
    text = geometry_to_json(geometry)
    assert "coordinates" not in json.loads(text)  # names of arrays, not the mesh itself
    variables = {name: values for name, (_dims, values) in geometry_variables(geometry).items()}
    assert set(variables) == {f"mesh_{p}_{a}" for p in ("left", "right") for a in ("coordinates", "faces")}
    assert geometry_from_json(text, variables).same_as(geometry)
    variables["mesh_left_coordinates"] = variables["mesh_left_coordinates"] + 1.0
    with pytest.raises(SurfaceInputError, match="digest"):
        geometry_from_json(text, variables)
    # the previous record (mesh inline in JSON) is still read, and checked
    record = json.loads(text)
    record.pop("arrays")
    record["mesh"] = {name: {"coordinates": part.coordinates.tolist(), "faces": part.faces.tolist()}
                      for name, part in zip(geometry.part_names, geometry.parts())}
    assert geometry_from_json(json.dumps(record)).same_as(geometry)
    record["mesh"]["left"]["coordinates"][0][0] += 1.0
    with pytest.raises(SurfaceInputError, match="digest"):
        geometry_from_json(json.dumps(record))
    assert geometry_from_json(None) is None


def test_sample_masks_on_surface_runs(runs):
    kept = np.setdiff1d(np.arange(N_SCANS), [7, 8, 30])
    evs = events(0)
    got = FirstLevelModel(t_r=T_R).fit(runs[0], events=evs, sample_masks=kept).compute_contrast("a - b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnFLM(t_r=T_R).fit(runs[0], events=evs, sample_masks=kept).compute_contrast("a - b")
    np.testing.assert_allclose(_values(got), _values(ref), rtol=1e-6, atol=1e-6)


def test_surface_masker_brings_its_smoothing(runs):
    masker = SurfaceMasker(smoothing_fwhm=8.0).fit(runs[0])
    _, got, ref = _both(runs[:1], mask_img=masker)
    np.testing.assert_allclose(_values(got), _values(ref), rtol=1e-6, atol=1e-6)
    _, plain, _ = _both(runs[:1])
    assert not np.allclose(_values(got), _values(plain))


def test_report_draws_surface_maps(mesh):
    import re

    from nilearn.glm.first_level import make_first_level_design_matrix

    evs = events(0)
    X = make_first_level_design_matrix(np.arange(N_SCANS) * T_R, evs)
    rng = np.random.default_rng(4)
    data = {}
    for part, m in mesh.parts.items():
        y = 100 + rng.standard_normal((N_SCANS, m.n_vertices))
        if part == "left":
            y[:, :300] += 8 * X["a"].to_numpy()[:, None]  # an effect of 'a' on the first 300 vertices
        data[part] = y.T
    model = FirstLevelModel(t_r=T_R).fit(SurfaceImage(mesh=mesh, data=data), events=evs)
    page = str(model.generate_report({"effect": "a"}, height_control="bonferroni", alpha=0.05))
    assert len(re.findall(r'<img class="brain" src="data:image/png;base64,', page)) == 1
    (n_clusters,) = re.findall(r"Cluster table \((\d+) clusters\)", page)
    assert int(n_clusters) >= 1
    assert f"{2 * 10242:,} voxels" in page and "left: 20484" not in page
