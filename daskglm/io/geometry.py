"""Surface and CIFTI geometries as JSON, for fit stores.

A store of a surface fit records the geometry its maps need:

- CIFTI: the brain-model axis, as the CIFTI-2 XML of a one-map dense scalar
  header (a few bytes per grayordinate);
- surfaces: the mesh *referenced* when it is a standard one (one of the
  fsaverage5 meshes nilearn ships, by name) or a mesh file (its path), with
  a content digest checked on reading; other meshes are copied
  (coordinates and faces).
"""

from __future__ import annotations

import functools
import json

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
        path = getattr(geometry.mesh.parts[name], "file_path", None)
        if path is not None:
            parts[name] = {"file": str(path)}
        else:
            parts[name] = {"coordinates": part.coordinates.tolist(), "faces": part.faces.tolist()}
    return {"mesh": parts}


def geometry_to_json(geometry) -> str:
    """The JSON record of a :class:`SurfaceGeometry` or :class:`CiftiGeometry`."""
    if isinstance(geometry, CiftiGeometry):
        header = cifti2.Cifti2Header.from_axes((cifti2.ScalarAxis(["map"]), geometry.brain_models))
        return json.dumps({"kind": "cifti", "xml": header.to_xml().decode()})
    record = {"kind": "surface", "parts": geometry.part_names, "sizes": geometry.sizes,
              "digest": geometry.digest(), **_mesh_json(geometry)}
    return json.dumps(record)


def _mesh_from_json(record: dict):
    from nilearn.surface import FileMesh, InMemoryMesh, PolyMesh

    if "standard" in record:
        return _standard_mesh(*record["standard"])
    parts = {}
    for name, part in record["mesh"].items():
        if "file" in part:
            parts[name] = FileMesh(part["file"])
        else:
            parts[name] = InMemoryMesh(np.asarray(part["coordinates"]), np.asarray(part["faces"]))
    return PolyMesh(**parts)


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
    except (KeyError, TypeError, ValueError, OSError) as err:
        raise SurfaceInputError(f"The stored surface geometry cannot be read: {err}") from err
    if geometry.digest() != record["digest"] or geometry.sizes != record["sizes"]:
        raise SurfaceInputError(
            "The mesh referenced by the store has changed since the fit "
            f"({geometry.describe()}); its content digest does not match."
        )
    return geometry
