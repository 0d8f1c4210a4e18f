"""Surface runs: nilearn ``SurfaceImage`` runs and GIfTI hemispheres as :class:`RunSource`.

A surface run's elements are the vertices of its mesh parts (``left``,
``right``, ...) concatenated in the mesh's part order, which is the order of
nilearn's ``SurfaceMasker``.  :class:`SurfaceGeometry` describes them (the
mesh, one :class:`~daskglm.kernels.mesh.SurfacePart` per part) and turns
element values back into ``SurfaceImage`` maps.

``SurfaceImage`` data are held in memory by nilearn (GIfTI files are read
whole when the image is made), so :class:`SurfaceImageRunSource` reads scan
blocks from those arrays; it never concatenates the run.
:class:`GiftiRunSource` streams one ``.func.gii`` file per mesh part without
loading it: GIfTI time series store each scan as its own (base64, gzip,
ASCII or external-file) DataArray, so the XML is parsed incrementally and one
scan per part is decoded at a time.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from daskglm.errors import SurfaceInputError
from daskglm.io.base import RunSource
from daskglm.kernels.mesh import SurfacePart

__all__ = ["SurfaceGeometry", "SurfaceImageRunSource", "GiftiRunSource", "is_surface_image", "loaded_mesh",
           "HEMI_LABELS", "write_surface_parts"]

#: BIDS ``hemi-`` labels of a ``SurfaceImage``'s parts
HEMI_LABELS = {"left": "L", "right": "R"}


def is_surface_image(obj) -> bool:
    """Whether ``obj`` is a :class:`nilearn.surface.SurfaceImage`."""
    # an instance means nilearn.surface is imported already: paths and NIfTI images do not pay
    # for that import (scikit-learn: ~0.6 s, ~40 MB)
    surface = sys.modules.get("nilearn.surface")
    return surface is not None and isinstance(obj, surface.SurfaceImage)


def loaded_mesh(mesh):
    """A mesh part with its coordinates and faces in memory.

    nilearn's ``FileMesh`` (a mesh part read from a ``.surf.gii`` file, as
    ``load_fsaverage`` returns) is read into an ``InMemoryMesh`` with its
    ``loaded()``; an ``InMemoryMesh`` is returned as it is.

    Parameters
    ----------
    mesh : nilearn.surface.SurfaceMesh
        One part of a ``PolyMesh`` (``mesh.parts["left"]``).

    Returns
    -------
    nilearn.surface.InMemoryMesh
        ``coordinates`` ``(n_vertices, 3)``, ``faces`` ``(n_faces, 3)``, ``n_vertices``.
    """
    return mesh.loaded() if hasattr(mesh, "loaded") else mesh


class SurfaceGeometry:
    """The elements of a surface run: a nilearn ``PolyMesh`` and its part sizes.

    Parameters
    ----------
    mesh : nilearn.surface.PolyMesh
    """

    kind = "surface"

    def __init__(self, mesh):
        self.mesh = mesh
        self.part_names = list(mesh.parts)
        self.sizes = [int(mesh.parts[p].n_vertices) for p in self.part_names]
        self._parts = None

    @property
    def n_elements(self) -> int:
        return int(sum(self.sizes))

    @property
    def spatial_shape(self) -> tuple[int]:
        return (self.n_elements,)

    def parts(self) -> list[SurfacePart]:
        """One :class:`SurfacePart` per mesh part, with its coordinates and faces."""
        if self._parts is None:
            meshes = [loaded_mesh(self.mesh.parts[p]) for p in self.part_names]
            self._parts = [SurfacePart(m.n_vertices, m.coordinates, m.faces) for m in meshes]
        return self._parts

    def digest(self) -> str:
        """A content hash of the mesh (names, sizes, coordinates, faces)."""
        h = hashlib.sha1()
        for name, part in zip(self.part_names, self.parts()):
            h.update(name.encode())
            h.update(np.ascontiguousarray(part.coordinates).tobytes())
            h.update(np.ascontiguousarray(part.faces).tobytes())
        return h.hexdigest()

    def __dask_tokenize__(self):
        return ("SurfaceGeometry", self.digest())

    def same_as(self, other) -> bool:
        """Same parts, sizes and mesh (coordinates and faces)."""
        if not isinstance(other, SurfaceGeometry):
            return False
        if self.mesh is other.mesh:
            return True
        return (
            self.part_names == other.part_names and self.sizes == other.sizes
            and self.digest() == other.digest()
        )

    def describe(self) -> str:
        return ", ".join(f"{n}: {s} vertices" for n, s in zip(self.part_names, self.sizes))

    def split(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Element-axis values (last axis) split per part, transposed to nilearn's (n, k)."""
        values = np.asarray(values)
        out, start = {}, 0
        for name, size in zip(self.part_names, self.sizes):
            block = values[..., start : start + size]
            out[name] = block if block.ndim == 1 else block.T
            start += size
        return out

    def image(self, values: np.ndarray, description: str = ""):
        """A ``SurfaceImage`` from values over all elements, (N,) or (k, N)."""
        from nilearn.surface import SurfaceImage

        return SurfaceImage(mesh=self.mesh, data=self.split(values))

    def values(self, img, what: str = "image") -> np.ndarray:
        """One map of a ``SurfaceImage`` on this mesh as a float64 array over all elements."""
        if not is_surface_image(img):
            raise SurfaceInputError(f"The {what} must be a SurfaceImage, got {type(img).__name__}.")
        if not SurfaceGeometry(img.mesh).same_as(self):
            raise SurfaceInputError(f"The {what} lies on a different mesh from the first image ({self.describe()}).")
        parts = []
        for name in self.part_names:
            data = np.asarray(img.data.parts[name], dtype=np.float64)
            if data.ndim == 2 and data.shape[1] == 1:
                data = data[:, 0]
            if data.ndim != 1:
                raise SurfaceInputError(f"The {what} must hold one map, got part {name} of shape {data.shape}.")
            parts.append(data)
        return np.concatenate(parts)

    def mask_from_image(self, img) -> np.ndarray:
        """A boolean element mask from a ``SurfaceImage`` (non-zero = in)."""
        if not is_surface_image(img):
            raise SurfaceInputError(f"A surface mask must be a SurfaceImage, got {type(img).__name__}.")
        if list(img.mesh.parts) != self.part_names or not SurfaceGeometry(img.mesh).same_as(self):
            raise SurfaceInputError(
                f"The mask's mesh ({SurfaceGeometry(img.mesh).describe()}) differs from the runs' "
                f"({self.describe()})."
            )
        parts = []
        for name in self.part_names:
            data = np.asarray(img.data.parts[name])
            if data.ndim == 2 and data.shape[1] == 1:
                data = data[:, 0]
            if data.ndim != 1:
                raise SurfaceInputError(f"The surface mask must hold one map, got part {name} of shape {data.shape}.")
            if not np.all(np.isfinite(data.astype(np.float64))):
                raise SurfaceInputError("The mask contains NaN or infinite values.")
            parts.append(data != 0)
        return np.concatenate(parts)


class SurfaceImageRunSource(RunSource):
    """A run held as a nilearn ``SurfaceImage`` (parts of shape (n_vertices, n_scans)).

    Parameters
    ----------
    img : nilearn.surface.SurfaceImage
    name : str
    """

    def __init__(self, img, name: str):
        self.img = img
        self.name = name
        self.geometry = SurfaceGeometry(img.mesh)
        self.affine = np.eye(4)
        lengths = set()
        dtypes = []
        for part in self.geometry.part_names:
            data = img.data.parts[part]
            if data.ndim != 2:
                raise SurfaceInputError(
                    f"Run {name} is a SurfaceImage with one sample per vertex (part {part} has shape "
                    f"{data.shape}); a run needs (n_vertices, n_scans) data."
                )
            lengths.add(data.shape[1])
            dtypes.append(np.asarray(data[:0, :0]).dtype)
        if len(lengths) != 1:
            raise SurfaceInputError(f"Run {name}: the mesh parts hold different numbers of scans {sorted(lengths)}.")
        n_scans = lengths.pop()
        if n_scans < 1:
            raise SurfaceInputError(f"Run {name} has no scan.")
        self.shape = (self.geometry.n_elements, n_scans)
        self.dtype = np.result_type(*dtypes)

    @property
    def data(self) -> tuple:
        """The parts' arrays, in element order (an in-memory run's content, for resume keys)."""
        return tuple(self.img.data.parts[p] for p in self.geometry.part_names)

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Scans ``t0..t1-1`` as an array of shape (k, n_elements)."""
        out = np.empty((t1 - t0, self.shape[0]), dtype=self.dtype)
        start = 0
        for part, size in zip(self.geometry.part_names, self.geometry.sizes):
            out[:, start : start + size] = np.asarray(self.img.data.parts[part][:, t0:t1]).T
            start += size
        return out

    def identity(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "mesh": self.geometry.digest()}


# ---------------------------------------------------------------- GIfTI files
_ENCODINGS = {
    "ASCII": "ascii", "GIFTI_ENCODING_ASCII": "ascii",
    "Base64Binary": "b64", "GIFTI_ENCODING_B64BIN": "b64",
    "GZipBase64Binary": "b64gz", "GIFTI_ENCODING_B64GZ": "b64gz",
    "ExternalFileBinary": "external", "GIFTI_ENCODING_EXTBIN": "external",
}


def _array_dtype(attrs: dict) -> np.dtype:
    import nibabel as nib

    dtype = np.dtype(nib.nifti1.data_type_codes.dtype[attrs.get("DataType", "NIFTI_TYPE_FLOAT32")])
    return dtype.newbyteorder(">" if attrs.get("Endian", "LittleEndian") in ("BigEndian", "GIFTI_ENDIAN_BIG") else "<")


def _decode(attrs: dict, text: str, base: Path) -> np.ndarray:
    """One GIfTI DataArray's values (flat) from its attributes and ``<Data>`` text."""
    import base64
    import zlib

    dtype = _array_dtype(attrs)
    encoding = _ENCODINGS.get(attrs.get("Encoding", ""), None)
    count = int(np.prod([int(attrs[k]) for k in attrs if k.startswith("Dim") and k[3:].isdigit()]))
    if encoding == "ascii":
        return np.array(text.split(), dtype=dtype)
    if encoding in ("b64", "b64gz"):
        raw = base64.b64decode(text)
        return np.frombuffer(zlib.decompress(raw) if encoding == "b64gz" else raw, dtype=dtype)
    if encoding == "external":
        path = base / attrs["ExternalFileName"]
        return np.fromfile(path, dtype=dtype, count=count, offset=int(attrs.get("ExternalFileOffset", 0)))
    raise SurfaceInputError(f"Unknown GIfTI encoding {attrs.get('Encoding')!r}.")


def _iter_data_arrays(path: Path):
    """Yield ``(attributes, values)`` of each DataArray of a GIfTI file, one at a time."""
    import xml.etree.ElementTree as ET

    attrs = None
    for event, elem in ET.iterparse(path, events=("start", "end")):
        if event == "start" and elem.tag == "DataArray":
            attrs = dict(elem.attrib)
        elif event == "end" and elem.tag == "Data" and attrs is not None:
            yield attrs, _decode(attrs, elem.text or "", path.parent)
            elem.clear()
        elif event == "end" and elem.tag == "DataArray":
            elem.clear()
            attrs = None


def _layout(path: Path) -> tuple[list[dict], int]:
    """The DataArray attributes of a GIfTI file (no data decoded) and its number of scans."""
    import xml.etree.ElementTree as ET

    arrays = [dict(e.attrib) for ev, e in ET.iterparse(path, events=("start",)) if e.tag == "DataArray"]
    if not arrays:
        raise SurfaceInputError(f"{path} holds no DataArray.")
    if len(arrays) == 1 and int(arrays[0].get("Dimensionality", 1)) == 2:
        return arrays, -1  # one 2-D array, read whole: its orientation is told by the mesh
    return arrays, len(arrays)


def _single_array_layout(path: Path, attrs: dict, size: int) -> tuple[int, bool]:
    """Scans of a file holding one 2-D array, and whether it is (time, vertex).

    nilearn reads such an array as (time, vertex) (``load_surf_data`` transposes
    it); (vertex, time) is accepted too.  The mesh part's vertex count decides;
    a square array is read as nilearn reads it.
    """
    dim0, dim1 = int(attrs["Dim0"]), int(attrs["Dim1"])
    if dim1 == size:
        return dim0, True
    if dim0 == size:
        return dim1, False
    raise SurfaceInputError(f"{path} holds a {dim0} x {dim1} array; the mesh part has {size} vertices.")


class GiftiRunSource(RunSource):
    """A surface run stored as one ``.func.gii`` file per mesh part, streamed scan by scan.

    GIfTI time series usually store each scan as its own DataArray, so the
    files are parsed incrementally (one DataArray decoded at a time) and the
    run is never held whole.  A file with one 2-D DataArray, (time, vertex)
    as nilearn reads it or (vertex, time), is decoded whole when read.

    Parameters
    ----------
    paths : dict
        Mesh part name (``"left"``, ``"right"``) -> ``.func.gii`` path.
    mesh : nilearn.surface.PolyMesh
        The mesh the data lie on (e.g. ``nilearn.datasets.load_fsaverage("fsaverage5")["pial"]``).
    name : str, optional
    """

    def __init__(self, paths: dict, mesh, name: str | None = None):
        self.geometry = SurfaceGeometry(mesh)
        if set(paths) != set(self.geometry.part_names):
            raise SurfaceInputError(f"GIfTI files given for {sorted(paths)}, the mesh has parts {self.geometry.part_names}.")
        self.paths = {p: Path(paths[p]) for p in self.geometry.part_names}
        self.path = self.paths[self.geometry.part_names[0]]  # a file input: identity() covers every part
        self.name = name or ", ".join(str(p) for p in self.paths.values())
        self.affine = np.eye(4)
        lengths, dtypes = set(), []
        self._single, self._time_major = {}, {}
        for part, size in zip(self.geometry.part_names, self.geometry.sizes):
            path = self.paths[part]
            if not path.exists():
                raise FileNotFoundError(f"GIfTI file not found: {path}")
            arrays, n_scans = _layout(path)
            self._single[part] = n_scans < 0
            if self._single[part]:
                n_scans, self._time_major[part] = _single_array_layout(path, arrays[0], size)
            elif int(arrays[0]["Dim0"]) != size:
                raise SurfaceInputError(f"{path} holds {arrays[0]['Dim0']} vertices, the mesh part {part} {size}.")
            lengths.add(n_scans)
            dtypes.append(_array_dtype(arrays[0]).newbyteorder("="))
        if len(lengths) != 1:
            raise SurfaceInputError(f"The GIfTI files hold different numbers of scans: {sorted(lengths)}.")
        self.shape = (self.geometry.n_elements, lengths.pop())
        self.dtype = np.result_type(*dtypes)

    @property
    def sequential(self) -> bool:
        """GIfTI files are XML: scans are read front to back."""
        return True

    def _part_scans(self, part: str):
        """Yield one part's scans, each a (n_vertices,) array, in order."""
        path = self.paths[part]
        for attrs, values in _iter_data_arrays(path):
            if self._single[part]:
                order = "F" if attrs.get("ArrayIndexingOrder") == "ColumnMajorOrder" else "C"
                block = values.reshape(int(attrs["Dim0"]), int(attrs["Dim1"]), order=order)
                yield from (block if self._time_major[part] else block.T)
                return
            yield values

    def iter_chunks(self, chunk: int, background: bool = True, reuse_buffer: bool = False):
        """Yield ``(t0, scans)`` for consecutive chunks of ``chunk`` scans, shape (k, n_elements)."""
        streams = [self._part_scans(p) for p in self.geometry.part_names]
        bounds = np.concatenate([[0], np.cumsum(self.geometry.sizes)])
        for t0 in range(0, self.n_scans, chunk):
            k = min(chunk, self.n_scans - t0)
            out = np.empty((k, self.shape[0]), dtype=self.dtype)
            for i in range(k):
                for j, stream in enumerate(streams):
                    out[i, bounds[j] : bounds[j + 1]] = next(stream)
            yield t0, out

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Scans ``t0..t1-1`` (parses the files from the start)."""
        out = np.empty((t1 - t0, self.shape[0]), dtype=self.dtype)
        for s0, block in self.iter_chunks(max(1, t1 - t0) if t0 == 0 else 1):
            if s0 >= t0:
                out[s0 - t0 : s0 - t0 + len(block)] = block[: t1 - s0]
            if s0 + len(block) >= t1:
                break
        return out

    def identity(self) -> dict:
        ident = {"name": self.name, "shape": list(self.shape), "mesh": self.geometry.digest()}
        for part, path in self.paths.items():
            st = path.stat()
            ident[part] = {"path": str(path.resolve()), "size": st.st_size, "mtime": st.st_mtime}
        return ident


def write_surface_parts(img, paths: dict, dtype=None) -> list[Path]:
    """Write each part of a ``SurfaceImage`` map to its own GIfTI file, as nilearn writes them.

    Parameters
    ----------
    img : nilearn.surface.SurfaceImage
    paths : dict
        ``{part: path}``, e.g. ``{"left": ".../x_hemi-L.func.gii", "right": ...}``.
    dtype : numpy dtype, optional
        Cast the values first (a mask: ``uint8``, as nilearn; GIfTI has no bool).

    Returns
    -------
    list of Path
        The files written, in ``paths``' order.
    """
    from daskglm.compat.nilearn import write_gifti_data

    written = []
    for part, path in paths.items():
        values = np.asarray(img.data.parts[part])
        write_gifti_data(values if dtype is None else values.astype(dtype), path)
        written.append(Path(path))
    return written
