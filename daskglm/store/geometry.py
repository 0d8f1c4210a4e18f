"""Surface and CIFTI geometries of fit stores: a JSON record plus, for other meshes, arrays.

A store of a surface fit records the geometry its maps need, in the root
attribute ``surface_geometry`` (JSON, a few hundred bytes for meshes):

- CIFTI: the brain-model axis, as the CIFTI-2 XML of a one-map dense scalar
  header (a few bytes per grayordinate);
- a *standard* mesh (one of the fsaverage5 meshes nilearn ships, offline:
  ``nilearn.datasets.load_fsaverage("fsaverage5")[kind]``) is *referenced* by
  name, with its content digest (SHA-1 of coordinates and faces), checked
  when the store is opened: a nilearn whose fsaverage5 files differ is a
  clear error, not a silently different mesh.  Standard meshes are
  recognised by digest (:data:`STANDARD_DIGESTS`, nilearn 0.14.1's files),
  so writing a store loads no mesh;
- any other mesh is stored as arrays of the store's shared group
  (:func:`geometry_variables`): ``mesh_<part>_coordinates``
  ``(mesh_<part>_vertex, mesh_xyz)`` and ``mesh_<part>_faces``
  ``(mesh_<part>_face, mesh_corner)`` per part (``left``, ``right``), with
  chunk checksums as every array of the store.  Coordinates are stored as
  float32 and faces as int32 whenever that is exact (always for GIfTI
  meshes), otherwise in the mesh's own dtypes; the record keeps the mesh's
  dtypes, so the reopened mesh (values and dtypes), and its digest, equal
  the original.

Stores written before the arrays (store format 3 too) hold the mesh inline in
the JSON record (``"mesh": {part: {"coordinates": [...], "faces": [...]}}``);
they are still read.  A store never names a file to open: a record with a
``file`` entry, an unknown standard mesh, or array names other than the ones
above are refused.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from nibabel import cifti2

from daskglm.errors import SurfaceInputError
from daskglm.io.cifti import CiftiGeometry
from daskglm.io.gifti import SurfaceGeometry, loaded_mesh

__all__ = [
    "geometry_attrs", "GEOMETRY_ATTR", "STANDARD_MESHES", "STANDARD_DIGESTS", "geometry_to_json",
           "geometry_variables", "geometry_from_json", "mesh_variable_specs", "standard_mesh"]

#: root attribute of a fit store holding the geometry (absent for volume fits)
GEOMETRY_ATTR = "surface_geometry"
#: the meshes nilearn ships (offline), referenced by name: (template, mesh type)
STANDARD_MESHES = (("fsaverage5", "pial"), ("fsaverage5", "white_matter"), ("fsaverage5", "inflated"),
                   ("fsaverage5", "sphere"), ("fsaverage5", "flat"))
#: digests (:meth:`SurfaceGeometry.digest`) of nilearn 0.14.1's standard meshes
STANDARD_DIGESTS = {
    "9eabf1bc3bd6e8e3319a3c8dae85cc502e84ae79": ("fsaverage5", "pial"),
    "edeaa7aa53232f08d8be01c1fbb264ad5955ed36": ("fsaverage5", "white_matter"),
    "075930b4e399dbd233d896756119695ea3b14149": ("fsaverage5", "inflated"),
    "531aa36b07f74231f192dfee964e5fe9702eb534": ("fsaverage5", "sphere"),
    "7462cc616c611ad5b3229582abf4980e04ae2023": ("fsaverage5", "flat"),
}
_PARTS = ("left", "right")


@functools.cache
def standard_mesh(template: str, kind: str = "pial"):
    """One of nilearn's shipped meshes: ``load_fsaverage(template)[kind]`` (a ``PolyMesh``).

    Raises
    ------
    ValueError
        ``(template, kind)`` is not in :data:`STANDARD_MESHES`.
    """
    if (template, kind) not in STANDARD_MESHES:
        known = ", ".join(sorted({t for t, _ in STANDARD_MESHES}))
        kinds = ", ".join(k for _, k in STANDARD_MESHES)
        raise ValueError(f"unknown standard mesh {template!r} / {kind!r}: the meshes nilearn ships are "
                         f"{known}, of types {kinds}")
    from nilearn.datasets import load_fsaverage

    return load_fsaverage(template)[kind]


def _names(part: str) -> tuple[str, str]:
    return f"mesh_{part}_coordinates", f"mesh_{part}_faces"


def mesh_variable_specs() -> dict[str, tuple[tuple[str, str], str]]:
    """The mesh arrays a store may hold: ``name -> (dims, dtype kinds)`` (for the store's validation)."""
    specs = {}
    for part in _PARTS:
        coords, faces = _names(part)
        specs[coords] = ((f"mesh_{part}_vertex", "mesh_xyz"), "f")
        specs[faces] = ((f"mesh_{part}_face", "mesh_corner"), "iu")
    return specs


def _standard(geometry: SurfaceGeometry):
    if geometry.part_names != list(_PARTS):
        return None
    return STANDARD_DIGESTS.get(geometry.digest())


def _mesh_arrays(geometry: SurfaceGeometry):
    """``(part, coordinates, faces)`` of each mesh part, in the mesh's own dtypes."""
    for name in geometry.part_names:
        part = loaded_mesh(geometry.mesh.parts[name])
        yield name, np.asarray(part.coordinates), np.asarray(part.faces)


def _compact(values: np.ndarray, small) -> np.ndarray:
    """``values`` as ``small`` when that is exact, else unchanged."""
    cast = values.astype(small)
    return cast if np.array_equal(cast, values) else values


def geometry_variables(geometry) -> dict[str, tuple[tuple[str, str], np.ndarray]]:
    """The arrays that store a non-standard mesh: ``name -> (dims, values)``; ``{}`` otherwise.

    Parameters
    ----------
    geometry : SurfaceGeometry, CiftiGeometry or None

    Returns
    -------
    dict
        Empty for CIFTI geometries and standard meshes (referenced by name).
    """
    if not isinstance(geometry, SurfaceGeometry) or _standard(geometry) is not None:
        return {}
    specs = mesh_variable_specs()
    out = {}
    for name, coordinates, faces in _mesh_arrays(geometry):
        coords_name, faces_name = _names(name)
        coordinates = _compact(coordinates, np.float32)
        faces = _compact(faces, np.int32) if faces.size and faces.max() < 2**31 and faces.min() >= 0 else faces
        out[coords_name] = (specs[coords_name][0], coordinates)
        out[faces_name] = (specs[faces_name][0], faces)
    return out


def geometry_attrs(geometry) -> dict[str, str]:
    """The root attributes that record a fit's geometry: ``{GEOMETRY_ATTR: json}``; ``{}`` for volumes (None)."""
    return {} if geometry is None else {GEOMETRY_ATTR: geometry_to_json(geometry)}


def geometry_to_json(geometry) -> str:
    """The JSON record of a :class:`SurfaceGeometry` or :class:`CiftiGeometry` (see the module)."""
    if isinstance(geometry, CiftiGeometry):
        header = cifti2.Cifti2Header.from_axes((cifti2.ScalarAxis(["map"]), geometry.brain_models))
        return json.dumps({"kind": "cifti", "xml": header.to_xml().decode()})
    record: dict[str, Any] = {"kind": "surface", "parts": geometry.part_names, "sizes": geometry.sizes,
                              "digest": geometry.digest()}
    standard = _standard(geometry)
    if standard is not None:
        record["standard"] = list(standard)
    else:
        record["arrays"] = {name: dict(zip(("coordinates", "faces"), _names(name)))
                            for name in geometry.part_names}
        record["dtypes"] = {name: {"coordinates": coordinates.dtype.str, "faces": faces.dtype.str}
                            for name, coordinates, faces in _mesh_arrays(geometry)}
    return json.dumps(record)


def _checked(name: str, coordinates, faces, kinds=("f", "iu")):
    from nilearn.surface import InMemoryMesh

    coordinates, faces = np.asarray(coordinates), np.asarray(faces)
    for what, values, kind in (("coordinates", coordinates, kinds[0]), ("faces", faces, kinds[1])):
        if values.dtype.kind not in kind:
            raise ValueError(f"mesh part {name!r}: {what} dtype {values.dtype} is not allowed")
        if values.ndim != 2 or values.shape[1] != 3 or not len(values):
            raise ValueError(f"mesh part {name!r}: {what} must be a non-empty (n, 3) array, "
                             f"got shape {values.shape}")
    if not np.all(np.isfinite(coordinates)):
        raise ValueError(f"mesh part {name!r} has non-finite coordinates")
    if faces.min() < 0 or faces.max() >= len(coordinates):
        raise ValueError(f"mesh part {name!r} has faces indexing vertices outside 0..{len(coordinates) - 1}")
    return InMemoryMesh(coordinates, faces)


def _inline_array(part: dict, key: str, kinds: str, default: str) -> np.ndarray:
    """One array of an inline JSON mesh (stores written before the mesh arrays)."""
    dtype = np.dtype(str(part.get(f"{key}_dtype", default)))
    if dtype.kind not in kinds:
        raise ValueError(f"{key} dtype {dtype} is not allowed")
    return np.asarray(part[key], dtype=np.float64 if kinds == "f" else np.int64).astype(dtype)


def _inline_part(name: str, part) -> Any:
    if not isinstance(part, dict) or "file" in part:
        raise ValueError(f"mesh part {name!r} must hold coordinates and faces (a store names no mesh file)")
    return _checked(name, _inline_array(part, "coordinates", "f", "<f8"), _inline_array(part, "faces", "iu", "<i8"))


def _array_part(name: str, entry, variables: Mapping, dtypes) -> Any:
    if entry != dict(zip(("coordinates", "faces"), _names(name))):
        raise ValueError(f"mesh part {name!r}: the arrays must be named {list(_names(name))}, got {entry!r:.120}")
    missing = [n for n in _names(name) if n not in variables]
    if missing:
        raise ValueError(f"mesh part {name!r}: the store lacks the array(s) {missing}")
    coords, faces = (np.asarray(getattr(variables[n], "values", variables[n])) for n in _names(name))
    mesh = _checked(name, coords, faces)
    wanted = dtypes.get(name, {}) if isinstance(dtypes, dict) else {}
    for key, values, kind in (("coordinates", coords, "f"), ("faces", faces, "iu")):
        dtype = np.dtype(str(wanted.get(key, values.dtype.str)))
        if dtype.kind not in kind:
            raise ValueError(f"mesh part {name!r}: {key} dtype {dtype} is not allowed")
        cast = values.astype(dtype)
        if not np.array_equal(cast, values):
            raise ValueError(f"mesh part {name!r}: the stored {key} do not fit the recorded dtype {dtype}")
        setattr(mesh, key, cast)
    return mesh


def _mesh_from_record(record: dict, variables: Mapping):
    from nilearn.surface import PolyMesh

    if "standard" in record:
        standard = tuple(record["standard"]) if isinstance(record["standard"], list) else None
        if standard not in STANDARD_MESHES:
            raise ValueError(f"unknown standard mesh {record['standard']!r}")
        return standard_mesh(*standard)
    if "arrays" in record:
        arrays = record["arrays"]
        if not isinstance(arrays, dict) or not arrays or set(arrays) - set(_PARTS):
            raise ValueError("'arrays' must map 'left' and/or 'right' to the names of their mesh arrays")
        dtypes = record.get("dtypes", {})
        return PolyMesh(**{name: _array_part(name, entry, variables, dtypes) for name, entry in arrays.items()})
    mesh = record["mesh"]  # stores written before the mesh arrays: the mesh inline
    if not isinstance(mesh, dict) or not mesh or set(mesh) - set(_PARTS):
        raise ValueError("'mesh' must map 'left' and/or 'right' to coordinates and faces")
    return PolyMesh(**{name: _inline_part(name, part) for name, part in mesh.items()})


def geometry_from_json(text: str | None, variables: Mapping | None = None):
    """The geometry recorded by :func:`geometry_to_json`; None for ``None`` (a volume fit).

    Parameters
    ----------
    text : str or None
        The ``surface_geometry`` attribute.
    variables : mapping, optional
        The store's variables (an ``xarray.Dataset`` or a dict of arrays):
        where a non-standard mesh's arrays (:func:`geometry_variables`) are read.

    Raises
    ------
    SurfaceInputError
        The record is malformed, its mesh arrays are missing or invalid, or the
        mesh does not match its recorded digest and sizes (a standard mesh that
        changed since the fit).
    """
    if text is None:
        return None
    try:
        record = json.loads(text)
        if record["kind"] == "cifti":
            from nibabel.cifti2.parse_cifti2 import Cifti2Extension

            header = Cifti2Extension(code=32, content=record["xml"].encode()).get_content()
            return CiftiGeometry(header.get_axis(1))
        geometry = SurfaceGeometry(_mesh_from_record(record, variables if variables is not None else {}))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise SurfaceInputError(f"The stored surface geometry cannot be read: {err}") from err
    if geometry.digest() != record.get("digest") or geometry.sizes != record.get("sizes"):
        what = "referenced by the store has changed since the fit" if "standard" in record else \
            "stored does not match its recorded digest"
        raise SurfaceInputError(f"The mesh {what} ({geometry.describe()}); its content digest does not match.")
    return geometry
