"""The group level's elements: which masker reads the subjects' maps, its element space, its topology.

A second-level analysis reads one map per subject through a masker, as
nilearn does: a ``NiftiMasker`` for volumes, a ``SurfaceMasker`` for
``SurfaceImage`` maps (nilearn 0.14.1's choice, smoothing on the mesh
included), and for CIFTI-2 dense scalar maps — which nilearn does not read —
:class:`CiftiMasker`, the same small interface (``fit``, ``transform``,
``inverse_transform``, ``mask_img_``, ``n_elements_``) over the
grayordinates of a :class:`~daskglm.space.surface.SurfaceSpace`.

:func:`input_kind` tells the kind of the inputs (``'volume'``, ``'surface'``,
``'cifti'``) from the first map or model, without reading data;
:func:`masker_space` is the fitted masker's
:class:`~daskglm.space.base.ElementSpace`; :func:`space_topology` is which of
its elements touch, for TFCE and cluster inference
(:mod:`daskglm.kernels.topology`): face-connected voxels, the edges of the
mesh, and for CIFTI the mesh of each cortical structure (given as ``mesh``:
a CIFTI file holds none) with the subcortical voxels of all volume
structures face-connected as one volume (across structure boundaries, as
nilearn's NIfTI inference and Connectome Workbench's ``-cifti-find-clusters``
do), never to the cortex.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
from scipy import sparse

from daskglm.errors import GroupInputError, MaskTypeError, SurfaceInputError
from daskglm.first_level.model import FirstLevelModel as DaskFirstLevelModel
from daskglm.io.cifti import CiftiGeometry, is_cifti
from daskglm.io.gifti import SurfaceGeometry, is_surface_image
from daskglm.kernels.mesh import mesh_adjacency, voxel_adjacency
from daskglm.kernels.topology import GraphTopology, VoxelTopology
from daskglm.space.base import ElementSpace, masker_mask
from daskglm.space.surface import SurfaceSpace, is_nilearn_surface_masker
from daskglm.space.volume import VolumeSpace

__all__ = ["CiftiMasker", "cifti_maps", "cifti_signature", "describe", "input_kind", "mask_kind",
           "check_mask_kind", "masker_space", "space_topology"]


def cifti_maps(img) -> list:
    """The maps of a CIFTI dense scalar image or path, one single-map ``Cifti2Image`` each."""
    if isinstance(img, (str, os.PathLike)):
        img = nib.load(img)
    data = np.asarray(img.dataobj)
    axis = img.header.get_axis(1)
    return [CiftiGeometry(axis).image(row) for row in data.reshape(-1, data.shape[-1])]


def describe(img, text: str):
    """``img`` with ``text`` as its NIfTI description (nilearn's); surface and CIFTI maps as they are."""
    if isinstance(img, nib.Nifti1Image):
        img.header["descrip"] = text
    return img


def _raw_cifti(path) -> tuple[nib.Nifti2Image, bytes | None]:
    """A CIFTI file as a NIfTI-2 image and the raw XML of its grayordinate axis (dimension 1), unparsed.

    nibabel leaves the CIFTI extension as bytes until asked; parsing it builds one object per
    grayordinate (~0.6 s for 91k).

    Raises
    ------
    SurfaceInputError
        The file has no NIfTI-2 header (a NIfTI-1 file, say).
    """
    from nibabel.wrapstruct import WrapStructError

    try:
        raw = nib.Nifti2Image.from_filename(path)
    except (WrapStructError, nib.filebasedimages.ImageFileError) as err:
        raise SurfaceInputError(f"{str(path)!r} is not a CIFTI-2 file (no NIfTI-2 header: {err}).") from err
    ext = next((e for e in raw.header.extensions if e.get_code() == 32), None)
    content = getattr(ext, "content", None)
    if not isinstance(content, bytes):
        return raw, None
    start = content.find(b'AppliesToMatrixDimension="1"')
    return raw, (content[start:] if start >= 0 else None)


def _brain_models_xml(path) -> bytes | None:
    """The raw CIFTI XML of a file's grayordinate axis (dimension 1), read without parsing it."""
    return _raw_cifti(path)[1]


def _same_models_values(path, key: bytes | None) -> np.ndarray | None:
    """A CIFTI file's maps ``(k, N)`` when its grayordinate XML is byte-identical to ``key``, else None.

    nibabel's CIFTI reader parses the grayordinate list into objects (~0.6 s
    for 91k grayordinates); files written alike (a pipeline's maps) carry
    the same XML text, so comparing the bytes is enough; others are parsed.
    """
    if key is None:
        return None
    raw, xml = _raw_cifti(path)
    if xml != key:
        return None
    data = np.asarray(raw.dataobj, dtype=np.float64)
    return data.reshape(-1, data.shape[-1])


def cifti_signature(img) -> tuple:
    """The brain models of a CIFTI image's grayordinate axis, from its header (no per-element axis is built)."""
    index_map = img.header.get_index_map(1)
    out = []
    for bm in index_map.brain_models:
        vertices = None if bm.vertex_indices is None else np.asarray(bm.vertex_indices, dtype=np.int64)
        voxels = None if bm.voxel_indices_ijk is None else np.asarray(bm.voxel_indices_ijk, dtype=np.int64)
        out.append((bm.brain_structure, bm.model_type, int(bm.index_offset), int(bm.index_count),
                    bm.surface_number_of_vertices,
                    None if vertices is None else vertices.tobytes(), None if voxels is None else voxels.tobytes()))
    volume = index_map.volume
    if volume is not None:
        out.append((tuple(volume.volume_dimensions),
                    np.asarray(volume.transformation_matrix_voxel_indices_ijk_to_xyz.matrix).round(6).tobytes()))
    return tuple(out)


class CiftiMasker:
    """nilearn's masker interface over the grayordinates of CIFTI-2 maps (nilearn has none).

    Parameters
    ----------
    mask_img : CIFTI image or path, boolean array over the grayordinates, or None
        ``None``: every grayordinate of the maps (as daskglm's first level).
    smoothing_fwhm : None
        A CIFTI file holds no mesh to smooth on: anything but ``None`` is refused.
    """

    target_affine = None
    target_shape = None

    def __init__(self, mask_img=None, smoothing_fwhm=None):
        self.mask_img = mask_img
        self.smoothing_fwhm = smoothing_fwhm

    def fit(self, imgs=None, y=None):
        """The grayordinates of the sample map (or of the mask image); returns ``self``."""
        if self.smoothing_fwhm is not None:
            raise SurfaceInputError(
                "smoothing_fwhm needs a surface mesh, and CIFTI files hold none; smooth the CIFTI maps "
                "beforehand (e.g. wb_command -cifti-smoothing) or pass smoothing_fwhm=None.")
        sample = imgs[0] if isinstance(imgs, (list, tuple)) else imgs
        given = masker_mask(self.mask_img) if self.mask_img is not None else None
        source = sample if sample is not None else given
        if source is None or not is_cifti(source):
            raise GroupInputError("A CIFTI group mask needs CIFTI maps (or a CIFTI mask image) to take its "
                                  "brain models from.")
        img = nib.load(source) if isinstance(source, (str, os.PathLike)) else source
        geometry = CiftiGeometry(img.header.get_axis(1))
        mask = np.ones(geometry.n_elements, dtype=bool) if given is None else geometry.mask_from_image(given)
        if not mask.any():
            raise SurfaceInputError("The mask is empty: it selects no grayordinate.")
        self.space_ = SurfaceSpace(mask, geometry)
        self._signature = cifti_signature(geometry.image(np.zeros(geometry.n_elements, dtype=np.float32)))
        self._xml_key = _brain_models_xml(source) if isinstance(source, (str, os.PathLike)) else None
        self.mask_img_ = self.space_.mask_img
        self.n_elements_ = self.space_.n_elements
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "space_")

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return tokenize("CiftiMasker", getattr(self, "space_", None), self.smoothing_fwhm)

    def _values(self, img) -> np.ndarray:
        """One map's in-mask values, its brain models checked by their header signature (fast)."""
        if isinstance(img, (str, os.PathLike)):
            fast = _same_models_values(img, self._xml_key)
            if fast is not None:
                if fast.shape != (1, self.space_.mask.size):
                    raise SurfaceInputError(f"The map must hold one map, got {fast.shape[0]}.")
                return fast[0][self.space_.mask]
            img = nib.load(img)
        if not isinstance(img, nib.Cifti2Image):
            raise SurfaceInputError(f"The map must be a CIFTI-2 image, got {type(img).__name__}.")
        if cifti_signature(img) != self._signature:
            raise SurfaceInputError("The map's brain models differ from the first map's.")
        data = np.asarray(img.dataobj, dtype=np.float64)
        if data.shape[0] != 1:
            raise SurfaceInputError(f"The map must hold one map, got {data.shape[0]}.")
        return data[0][self.space_.mask]

    def transform(self, imgs) -> np.ndarray:
        """In-mask values: ``(V,)`` for one single-map image, ``(n, V)`` for a list."""
        if isinstance(imgs, (list, tuple)):
            return np.stack([self._values(img) for img in imgs])
        return self._values(imgs)

    def inverse_transform(self, values) -> nib.Cifti2Image:
        """A dense scalar image (``.dscalar.nii``) over the maps' brain models (0 outside the mask)."""
        return self.space_.unmask(np.asarray(values))


def _kind_of(obj) -> str | None:
    if is_surface_image(obj):
        return "surface"
    if is_cifti(obj):
        return "cifti"
    if isinstance(obj, DaskFirstLevelModel):
        return obj.space_.kind if obj.__sklearn_is_fitted__() else None
    if is_nilearn_surface_masker(getattr(obj, "masker_", None)):
        return "surface"
    return None


def input_kind(items) -> str:
    """``'volume'``, ``'surface'`` or ``'cifti'``: the kind of the first map or model (nothing is read)."""
    first = items[0] if isinstance(items, (list, tuple)) and items else items
    return _kind_of(first) or "volume"


def mask_kind(mask) -> str | None:
    """The kind of a group mask or masker (``None`` when none is given)."""
    if mask is None:
        return None
    if is_nilearn_surface_masker(mask) or is_surface_image(mask):
        return "surface"
    if isinstance(mask, CiftiMasker) or is_cifti(mask) or isinstance(mask, np.ndarray):
        return "cifti"
    return "volume"


def check_mask_kind(mask, kind: str) -> None:
    """nilearn's error for a mask of another kind than the maps (volume / surface / CIFTI)."""
    given = mask_kind(mask)
    if given is not None and given != kind:
        raise MaskTypeError("Mask and input images must be of compatible types.\n"
                            f"Got a {given} mask for {kind} maps.")


def masker_space(masker) -> ElementSpace:
    """The element space of a fitted group masker (NIfTI, surface or CIFTI)."""
    if isinstance(masker, CiftiMasker):
        return masker.space_
    mask_img = masker.mask_img_
    if is_surface_image(mask_img):
        geometry = SurfaceGeometry(mask_img.mesh)
        return SurfaceSpace(geometry.mask_from_image(mask_img), geometry, masker.smoothing_fwhm,
                            given_masker=masker)
    return VolumeSpace(np.asarray(mask_img.dataobj).astype(bool), mask_img.affine, masker.smoothing_fwhm,
                       given_masker=masker)


#: CIFTI cortical structures and the mesh parts they lie on
_CORTEX = {"CIFTI_STRUCTURE_CORTEX_LEFT": "left", "CIFTI_STRUCTURE_CORTEX_RIGHT": "right"}


def _cifti_adjacency(geometry: CiftiGeometry, mesh) -> sparse.csr_matrix:
    """Grayordinate adjacency: each cortex by its mesh; the voxels of all volume structures face-connected.

    The volume structures are one volume: two face neighbours in different structures (thalamus and
    putamen, say) are joined, as in a NIfTI map (nilearn) and in Workbench's ``-cifti-find-clusters``.
    """
    from daskglm.reporting.surface_report import cifti_mesh

    bm = geometry.brain_models
    n = geometry.n_elements
    blocks = []
    surfaces = [(name, sl) for name, sl in geometry.structures() if name in bm.nvertices]
    if surfaces:
        if mesh is None:
            raise SurfaceInputError(
                "TFCE and cluster inference on CIFTI maps need the surfaces their cortex lies on (a CIFTI "
                "file holds no mesh): pass mesh=(left, right) .surf.gii files (e.g. the fsLR 32k "
                "midthickness pair; daskglm group --mesh LEFT RIGHT) or a nilearn PolyMesh.")
        polymesh = cifti_mesh(mesh, bm)
        for name, sl in surfaces:
            if name not in _CORTEX:
                raise SurfaceInputError(f"No mesh part for the CIFTI surface structure {name}.")
            part = polymesh.parts[_CORTEX[name]]
            part = part.loaded() if hasattr(part, "loaded") else part
            full = mesh_adjacency(part.faces, bm.nvertices[name])
            vertices = bm.vertex[sl]
            blocks.append((np.arange(sl.start, sl.stop), full[vertices][:, vertices]))
    volume = np.flatnonzero(bm.volume_mask)
    if volume.size:
        blocks.append((volume, voxel_adjacency(bm.voxel[volume])))
    rows, cols = [], []
    for index, block in blocks:
        coo = block.tocoo()
        rows.append(index[coo.row])
        cols.append(index[coo.col])
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    return sparse.csr_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(n, n))


def space_topology(space: ElementSpace, mesh=None):
    """Which in-mask elements touch (:mod:`daskglm.kernels.topology`), for TFCE and cluster inference.

    Parameters
    ----------
    space : ElementSpace
        The group mask's space (:func:`masker_space`).
    mesh : PolyMesh, dict or (left, right) pair, optional
        CIFTI maps only: the surfaces of their cortical structures.

    Raises
    ------
    SurfaceInputError
        CIFTI maps with cortical structures and no mesh; a mesh for other maps.
    """
    if space.kind != "cifti" and mesh is not None:
        raise SurfaceInputError("mesh= is for CIFTI maps; volumes and SurfaceImages carry their own.")
    if space.kind == "volume":
        return VoxelTopology(space.mask)
    if space.kind == "cifti":
        full = _cifti_adjacency(space.geometry, mesh)
    else:
        parts = space.geometry.parts()
        full = sparse.block_diag([mesh_adjacency(p.faces, p.n_elements) for p in parts], format="csr")
    keep = np.flatnonzero(space.mask)
    return GraphTopology(full[keep][:, keep])
