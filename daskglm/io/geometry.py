"""Surface and CIFTI geometries as JSON, for fit stores.

A store of a surface fit records the geometry its maps need:

- CIFTI: the brain-model axis, as the CIFTI-2 XML of a one-map dense scalar
  header (a few bytes per grayordinate);
- surfaces: the mesh *referenced* when it is a standard one (one of the
  fsaverage5 meshes nilearn ships, by name), with a content digest checked
  on reading; every other mesh, mesh files included, is copied (coordinates
  and faces, with their dtypes).  A store never names a file to open: a
  record with a ``file`` entry (older stores) or an unknown standard mesh is
  refused.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
from nibabel import cifti2

from ..errors import SurfaceInputError
from .cifti import CiftiGeometry
from .gifti import SurfaceGeometry

__all__ = ["GEOMETRY_ATTR", "geometry_to_json", "geometry_from_json"]

#: root attribute of a fit store holding the geometry (absent for volume fits)
GEOMETRY_ATTR = "surface_geometry"
#: the meshes nilearn ships (offline), referenced by name
STANDARD_MESHES = (("fsaverage5", "pial"), ("fsaverage5", "white_matter"), ("fsaverage5", "inflated"),
                   ("fsaverage5", "sphere"), ("fsaverage5", "flat"))


@functools.cache
def _standard_mesh(template: str, kind: str):
    from nilearn.datasets import load_fsaverage

    return load_fsaverage(template)[kind]


@functools.cache
def _standard_digests() -> dict[str, tuple[str, str]]:
    return {SurfaceGeometry(_standard_mesh(t, k)).digest(): (t, k) for t, k in STANDARD_MESHES}


def _mesh_json(geometry: SurfaceGeometry) -> dict:
    standard = _standard_digests().get(geometry.digest())
    if standard is not None and geometry.part_names == ["left", "right"]:
        return {"standard": list(standard)}
    parts = {}
    for name, part in zip(geometry.part_names, geometry.parts()):
        coordinates, faces = np.asarray(part.coordinates), np.asarray(part.faces)
        parts[name] = {"coordinates": coordinates.tolist(), "faces": faces.tolist(),
                       "coordinates_dtype": coordinates.dtype.str, "faces_dtype": faces.dtype.str}
    return {"mesh": parts}


def geometry_to_json(geometry) -> str:
    """The JSON record of a :class:`SurfaceGeometry` or :class:`CiftiGeometry`."""
    if isinstance(geometry, CiftiGeometry):
        header = cifti2.Cifti2Header.from_axes((cifti2.ScalarAxis(["map"]), geometry.brain_models))
        return json.dumps({"kind": "cifti", "xml": header.to_xml().decode()})
    record = {"kind": "surface", "parts": geometry.part_names, "sizes": geometry.sizes,
              "digest": geometry.digest(), **_mesh_json(geometry)}
    return json.dumps(record)


def _array(part: dict, key: str, kinds: str, default: str) -> np.ndarray:
    dtype = np.dtype(str(part.get(f"{key}_dtype", default)))
    if dtype.kind not in kinds:
        raise ValueError(f"{key} dtype {dtype} is not allowed")
    values = np.asarray(part[key], dtype=np.float64 if kinds == "f" else np.int64)
    if values.ndim != 2 or values.shape[1] != 3 or not len(values):
        raise ValueError(f"{key} must be a non-empty (n, 3) array, got shape {values.shape}")
    return values.astype(dtype)


def _mesh_part(name: str, part) -> Any:
    from nilearn.surface import InMemoryMesh

    if not isinstance(part, dict) or "file" in part:
        raise ValueError(f"mesh part {name!r} must hold coordinates and faces (a store names no mesh file)")
    coordinates = _array(part, "coordinates", "f", "<f8")
    faces = _array(part, "faces", "iu", "<i8")
    if not np.all(np.isfinite(coordinates)):
        raise ValueError(f"mesh part {name!r} has non-finite coordinates")
    if faces.min() < 0 or faces.max() >= len(coordinates):
        raise ValueError(f"mesh part {name!r} has faces indexing vertices outside 0..{len(coordinates) - 1}")
    return InMemoryMesh(coordinates, faces)


def _mesh_from_json(record: dict):
    from nilearn.surface import PolyMesh

    if "standard" in record:
        standard = tuple(record["standard"]) if isinstance(record["standard"], list) else None
        if standard not in STANDARD_MESHES:
            raise ValueError(f"unknown standard mesh {record['standard']!r}")
        return _standard_mesh(*standard)
    mesh = record["mesh"]
    if not isinstance(mesh, dict) or not mesh or set(mesh) - {"left", "right"}:
        raise ValueError("'mesh' must map 'left' and/or 'right' to coordinates and faces")
    return PolyMesh(**{name: _mesh_part(name, part) for name, part in mesh.items()})


def geometry_from_json(text: str | None):
    """The geometry recorded by :func:`geometry_to_json`; None for ``None`` (a volume fit).

    Raises
    ------
    SurfaceInputError
        The record is malformed, or a referenced mesh no longer matches its digest.
    """
    if text is None:
        return None
    try:
        record = json.loads(text)
        if record["kind"] == "cifti":
            from nibabel.cifti2.parse_cifti2 import Cifti2Extension

            header = Cifti2Extension(code=32, content=record["xml"].encode()).get_content()
            return CiftiGeometry(header.get_axis(1))
        geometry = SurfaceGeometry(_mesh_from_json(record))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise SurfaceInputError(f"The stored surface geometry cannot be read: {err}") from err
    if geometry.digest() != record.get("digest") or geometry.sizes != record.get("sizes"):
        raise SurfaceInputError(
            "The mesh referenced by the store has changed since the fit "
            f"({geometry.describe()}); its content digest does not match."
        )
    return geometry
