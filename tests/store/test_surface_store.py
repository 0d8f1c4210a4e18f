"""Surface fit stores: standard meshes referenced by name, other meshes as zarr arrays, older stores read.

A mesh read from files is copied into the store; a tampered ``surface_geometry`` record is a
store error and never makes the reader open a file.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_fsaverage
from nilearn.surface import InMemoryMesh, PolyMesh, SurfaceImage
from nilearn.surface.utils import check_polymesh_equal

from daskglm import FirstLevelModel, open_model
from daskglm.errors import StoreError
from daskglm.io.gifti import SurfaceGeometry
from daskglm.store.geometry import GEOMETRY_ATTR, STANDARD_DIGESTS, STANDARD_MESHES
from tests._unequal import _set_root_attr

N_SCANS, T_R = 24, 2.0


@pytest.fixture(scope="module")
def fsaverage5():
    return load_fsaverage("fsaverage5")["pial"]


def _moved(mesh, dtype=np.float32) -> PolyMesh:
    """fsaverage5 moved by 1 mm: a mesh of fsaverage5's size that is not a standard one."""
    return PolyMesh(**{p: InMemoryMesh((np.asarray(m.coordinates) + np.float32(1)).astype(dtype),
                                       np.asarray(m.faces)) for p, m in mesh.parts.items()})


def _run(mesh, seed=0) -> SurfaceImage:
    rng = np.random.default_rng(seed)
    data = {p: (100 + rng.standard_normal((m.n_vertices, N_SCANS))) for p, m in mesh.parts.items()}
    return SurfaceImage(mesh=mesh, data=data)


def _events() -> pd.DataFrame:
    return pd.DataFrame({"onset": [0.0, 8.0, 16.0, 24.0, 32.0, 40.0], "duration": 2.0,
                         "trial_type": ["a", "b"] * 3})


def _values(img) -> np.ndarray:
    return np.concatenate([np.asarray(img.data.parts[p]).ravel() for p in img.mesh.parts])


def _fit(mesh, path: Path):
    model = FirstLevelModel(t_r=T_R, noise_model="ols").fit(_run(mesh), events=_events())
    z = model.compute_contrast("a - b")
    model.to_zarr(path)
    return z


def _root(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())


def _shared(path: Path) -> Path:
    return path / _root(path)["attributes"]["daskglm_shared"]


def test_standard_digests_are_nilearns_meshes():
    for template, kind in STANDARD_MESHES:
        digest = SurfaceGeometry(load_fsaverage(template)[kind]).digest()
        assert STANDARD_DIGESTS[digest] == (template, kind)


def test_standard_mesh_is_referenced(fsaverage5, tmp_path):
    store = tmp_path / "fit.zarr"
    z = _fit(fsaverage5, store)
    record = json.loads(_root(store)["attributes"][GEOMETRY_ATTR])
    assert record["standard"] == ["fsaverage5", "pial"] and "arrays" not in record and "mesh" not in record
    assert not list(_shared(store).glob("mesh_*"))
    assert (store / "zarr.json").stat().st_size < 20_000
    back = open_model(store)
    check_polymesh_equal(back.compute_contrast("a - b").mesh, fsaverage5)
    np.testing.assert_array_equal(_values(back.compute_contrast("a - b")), _values(z))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_other_mesh_is_stored_as_arrays(fsaverage5, tmp_path, dtype):
    mesh = _moved(fsaverage5, dtype)
    store = tmp_path / "fit.zarr"
    z = _fit(mesh, store)
    root_size = (store / "zarr.json").stat().st_size
    assert root_size < 20_000, root_size  # the inline JSON mesh of these 20,484 vertices was ~1.6 MB
    record = json.loads(_root(store)["attributes"][GEOMETRY_ATTR])
    assert record["arrays"]["left"] == {"coordinates": "mesh_left_coordinates", "faces": "mesh_left_faces"}
    for part in ("left", "right"):
        coords = json.loads((_shared(store) / f"mesh_{part}_coordinates" / "zarr.json").read_text())
        faces = json.loads((_shared(store) / f"mesh_{part}_faces" / "zarr.json").read_text())
        # float32 / int32 on disk when exact (here: the float64 mesh holds float32 values, faces int64 or int32)
        assert coords["data_type"] == "float32" and faces["data_type"] == "int32"
        assert coords["shape"] == [10242, 3] and coords["dimension_names"] == [f"mesh_{part}_vertex", "mesh_xyz"]
    back = open_model(store)
    z_back = back.compute_contrast("a - b")
    check_polymesh_equal(z_back.mesh, mesh)
    for part in ("left", "right"):
        got = z_back.mesh.parts[part]
        assert got.coordinates.dtype == np.asarray(mesh.parts[part].coordinates).dtype  # exact round trip
        np.testing.assert_array_equal(got.coordinates, mesh.parts[part].coordinates)
        np.testing.assert_array_equal(got.faces, mesh.parts[part].faces)
    np.testing.assert_array_equal(_values(z_back), _values(z))


def test_float64_coordinates_that_float32_cannot_hold_are_kept(tmp_path):
    from nilearn.conftest import _make_mesh

    mesh = _make_mesh()
    mesh = PolyMesh(**{p: InMemoryMesh(np.asarray(m.coordinates, np.float64) + 1e-9, m.faces)
                       for p, m in mesh.parts.items()})
    store = tmp_path / "fit.zarr"
    z = _fit(mesh, store)
    coords = json.loads((_shared(store) / "mesh_left_coordinates" / "zarr.json").read_text())
    assert coords["data_type"] == "float64"
    back = open_model(store).compute_contrast("a - b")
    check_polymesh_equal(back.mesh, mesh)
    np.testing.assert_array_equal(_values(back), _values(z))


def _old_record(mesh) -> str:
    """The geometry record as the previous code wrote it: the mesh inline in JSON."""
    geometry = SurfaceGeometry(mesh)
    parts = {}
    for name, part in zip(geometry.part_names, geometry.parts()):
        c, f = np.asarray(part.coordinates), np.asarray(part.faces)
        parts[name] = {"coordinates": c.tolist(), "faces": f.tolist(),
                       "coordinates_dtype": c.dtype.str, "faces_dtype": f.dtype.str}
    return json.dumps({"kind": "surface", "parts": geometry.part_names, "sizes": geometry.sizes,
                       "digest": geometry.digest(), "mesh": parts})


def _make_old(store: Path, mesh) -> int:
    """Turn a store into one written by the previous code (store format 3, inline JSON mesh)."""
    root = _root(store)
    root["attributes"][GEOMETRY_ATTR] = _old_record(mesh)
    (store / "zarr.json").write_text(json.dumps(root))
    for array in _shared(store).glob("mesh_*"):
        shutil.rmtree(array)
    return (store / "zarr.json").stat().st_size


def test_stores_with_an_inline_json_mesh_still_open(fsaverage5, tmp_path):
    mesh = _moved(fsaverage5)
    store = tmp_path / "fit.zarr"
    z = _fit(mesh, store)
    size = _make_old(store, mesh)
    assert size > 1_000_000 and _root(store)["attributes"]["daskglm_format_version"] == 3
    back = open_model(store)
    z_back = back.compute_contrast("a - b")
    check_polymesh_equal(z_back.mesh, mesh)
    np.testing.assert_array_equal(_values(z_back), _values(z))


def test_mesh_mismatch_is_a_store_error(fsaverage5, tmp_path):
    store = tmp_path / "fit.zarr"
    _fit(_moved(fsaverage5), store)
    root = _root(store)
    record = json.loads(root["attributes"][GEOMETRY_ATTR])
    record["digest"] = "0" * 40
    root["attributes"][GEOMETRY_ATTR] = json.dumps(record)
    (store / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(StoreError, match="surface_geometry.*digest"):
        open_model(store)
    # a reference to a standard mesh whose digest differs (another nilearn's files): refused on open
    record.pop("arrays")
    record["standard"] = ["fsaverage5", "inflated"]
    root["attributes"][GEOMETRY_ATTR] = json.dumps(record)
    (store / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(StoreError, match="changed since the fit"):
        open_model(store)


def test_missing_or_renamed_mesh_arrays_are_store_errors(fsaverage5, tmp_path):
    store = tmp_path / "fit.zarr"
    _fit(_moved(fsaverage5), store)
    root = _root(store)
    record = json.loads(root["attributes"][GEOMETRY_ATTR])
    record["arrays"]["left"]["faces"] = "mask"  # a store names only its own mesh arrays
    root["attributes"][GEOMETRY_ATTR] = json.dumps(record)
    (store / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(StoreError, match="must be named"):
        open_model(store)
    record["arrays"]["left"]["faces"] = "mesh_left_faces"
    root["attributes"][GEOMETRY_ATTR] = json.dumps(record)
    (store / "zarr.json").write_text(json.dumps(root))
    shutil.rmtree(_shared(store) / "mesh_right_faces")
    with pytest.raises(StoreError, match="lacks the array"):
        open_model(store)


def test_corrupt_mesh_chunk_is_a_store_error(fsaverage5, tmp_path):
    store = tmp_path / "fit.zarr"
    _fit(_moved(fsaverage5), store)
    chunk = next(p for p in (_shared(store) / "mesh_left_coordinates").rglob("*") if p.is_file()
                 and p.name != "zarr.json")
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with warnings.catch_warnings(), pytest.raises(StoreError):
        warnings.simplefilter("ignore")
        open_model(store)


# ------------------------------------------------ stored surface geometry
@pytest.fixture(scope="module")
def surface_store(tmp_path_factory) -> Path:
    """A surface fit on a mesh read from GIfTI files (float32 coordinates), the files removed after writing."""
    from nilearn.conftest import _make_mesh
    from nilearn.surface import FileMesh, PolyMesh, SurfaceImage

    root = tmp_path_factory.mktemp("surface")
    small = _make_mesh()
    files = {}
    for part, m in small.parts.items():
        files[part] = root / f"{part}.surf.gii"
        m.to_gifti(files[part])
    mesh = PolyMesh(**{part: FileMesh(path) for part, path in files.items()})
    rng = np.random.default_rng(5)
    data = {part: 100 + rng.standard_normal((m.n_vertices, 40)) for part, m in small.parts.items()}
    design = pd.DataFrame({"a": rng.standard_normal(40), "constant": 1.0})
    model = FirstLevelModel(noise_model="ols").fit(SurfaceImage(mesh=mesh, data=data), design_matrices=design)
    path = root / "fit.zarr"
    model.to_zarr(path)
    for file in files.values():
        file.unlink()  # the store copies the mesh: it never refers to a file
    return path


def test_surface_mesh_is_copied_into_the_store(surface_store):
    record = json.loads(_root(surface_store)["attributes"]["surface_geometry"])
    assert "file" not in json.dumps(record) and set(record["arrays"]) == {"left", "right"}  # zarr arrays
    z = open_model(surface_store).compute_contrast("a")
    assert z.mesh.parts["left"].n_vertices == 4 and np.isfinite(np.asarray(z.data.parts["right"])).all()


@pytest.mark.parametrize(("record", "fragment"), [
    ({"kind": "surface", "parts": ["left"], "sizes": [4], "mesh": {"left": {"file": "/etc/hostname"}}},
     "names no mesh file"),
    ({"kind": "surface", "parts": ["left", "right"], "sizes": [4, 5], "standard": ["../../../etc", "pial"]},
     "unknown standard mesh"),
    ({"kind": "surface", "mesh": {"left": {"coordinates": [[0, 0, 0]], "faces": [[0, 1, 2]]}}}, "outside"),
    ({"kind": "surface", "mesh": {"left": {"coordinates": [[0, 0]], "faces": [[0, 0, 0]]}}}, r"\(n, 3\)"),
    ({"kind": "surface", "mesh": {"left": {"coordinates": [[0, 0, 0]], "faces": [[0, 0, 0]],
                                           "faces_dtype": "<f8"}}}, "dtype"),
    ({"kind": "cifti", "xml": "<CIFTI"}, ""),
    ("not json", ""),
    (7, ""),
])
def test_tampered_surface_geometry_is_a_store_error(surface_store, tmp_path, monkeypatch, record, fragment):
    from nilearn import surface

    store = tmp_path / "fit.zarr"
    shutil.copytree(surface_store, store)
    _set_root_attr(store, "surface_geometry", record if isinstance(record, (str, int)) else json.dumps(record))

    def no_file_mesh(*args, **kwargs):
        raise AssertionError("a store made the reader open a mesh file")

    monkeypatch.setattr(surface, "FileMesh", no_file_mesh)
    with pytest.raises(StoreError, match=f"fit.zarr.*surface_geometry.*{fragment}"):
        open_model(store)
