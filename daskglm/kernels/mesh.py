"""Per-scan preprocessing of surface and grayordinate data (numpy/scipy only).

A surface or CIFTI run reaches the engine as chunks of scans laid out as
``(k, n_elements)``: the elements of every part (hemisphere, CIFTI brain
structure) concatenated in the input's order.  :class:`MeshMasker` is the
surface counterpart of :class:`~daskglm.kernels.masker.VolumeMasker` (same
``transform`` / ``n_voxels`` interface); the fit's element space
(:mod:`daskglm.space`) picks between them.

Smoothing follows nilearn 0.14.1's surface smoothing
(``nilearn.image.image._smooth_surface_img``): per mesh part, the vertex
adjacency matrix (``compute_adjacency_matrix(values="ones")``) is
row-normalised to weight 1/2 spread over a vertex's neighbours, its diagonal
set to 1/2, and applied ``n`` times with
``n = floor(1.14 · 4π σ² / (7 · mean vertex area) + 1/2)`` and
``σ = FWHM / sqrt(ln 256)`` (FreeSurfer's ``MRISfwhm2niters``).  Smoothing
acts on the whole part, before masking, as nilearn does.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse import csr_matrix

from daskglm.kernels.masker import _ensure_finite

__all__ = [
    "SurfacePart", "MeshMasker", "smoothing_iterations", "smoothing_operator",
    "mesh_area", "mesh_adjacency", "voxel_adjacency", "face_pairs",
]

CENTER_WEIGHT = 0.5


class SurfacePart:
    """One part of a surface run: its size and, when known, its mesh.

    Parameters
    ----------
    n_elements : int
    coordinates : ndarray (n_elements, 3) or None
    faces : ndarray (n_faces, 3) of int, or None
    """

    def __init__(self, n_elements: int, coordinates=None, faces=None):
        self.n_elements = int(n_elements)
        self.coordinates = None if coordinates is None else np.asarray(coordinates, dtype=np.float64)
        self.faces = None if faces is None else np.asarray(faces, dtype=np.int64)

    @property
    def has_mesh(self) -> bool:
        return self.coordinates is not None and self.faces is not None


def mesh_area(coordinates: np.ndarray, faces: np.ndarray) -> float:
    """Total area of a triangle mesh (nilearn's ``InMemoryMesh._area``)."""
    v0, v1, v2 = (coordinates[faces[:, i]] for i in range(3))
    return float(0.5 * np.linalg.norm(np.cross(v1 - v0, v2 - v0), axis=1).sum())


def smoothing_iterations(fwhm, part: SurfacePart) -> int:
    """Smoothing steps for a FWHM in mm on one mesh (nilearn's ``_mris_fwhm_to_niters``)."""
    if not fwhm:
        return 0
    std = float(fwhm) / math.sqrt(math.log(256.0))
    avg_area = mesh_area(part.coordinates, part.faces) / part.n_elements
    return int(math.floor(1.14 * (4 * math.pi * std**2) / (7 * avg_area) + 0.5))


def mesh_adjacency(faces: np.ndarray, n: int) -> csr_matrix:
    """The vertex adjacency of a triangle mesh: a symmetric 0/1 sparse (n, n) matrix (no diagonal).

    The edges of the faces, each once (nilearn's ``compute_adjacency_matrix(values="ones")``).
    """
    f = np.asarray(faces, dtype=np.int64)
    edges = np.vstack([f[:, [0, 1]], f[:, [0, 2]], f[:, [1, 2]]])
    big = edges[:, 0] > edges[:, 1]
    codes = np.unique(
        np.concatenate([edges[big, 0] + edges[big, 1] * n, edges[~big, 1] + edges[~big, 0] * n])
    )
    u, v = codes // n, codes % n
    ones = np.ones(2 * len(codes), dtype=np.int64)
    return csr_matrix((ones, (np.concatenate([u, v]), np.concatenate([v, u]))), shape=(n, n))


def face_pairs(ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face-neighbour pairs among voxels given by their integer indices ``(n, 3)``: rows ``(r, c)`` of ``ijk``.

    Each pair once (``c``'s voxel one step above ``r``'s along an axis); the connectivity of
    ``scipy.ndimage.generate_binary_structure(3, 1)``, nilearn's for clusters and TFCE.  The
    voxels' rows are laid on their bounding box, and neighbours are read off shifted views of it.
    """
    ijk = np.asarray(ijk, dtype=np.int64).reshape(-1, 3)
    if len(ijk) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo = ijk.min(axis=0)
    row = np.full(tuple(ijk.max(axis=0) - lo + 1), -1, dtype=np.int64)
    row[tuple((ijk - lo).T)] = np.arange(len(ijk))
    rs, cs = [], []
    for axis in range(3):
        below = row[tuple(slice(None, -1) if a == axis else slice(None) for a in range(3))]
        above = row[tuple(slice(1, None) if a == axis else slice(None) for a in range(3))]
        both = (below >= 0) & (above >= 0)
        rs.append(below[both])
        cs.append(above[both])
    return np.concatenate(rs), np.concatenate(cs)


def voxel_adjacency(ijk: np.ndarray) -> csr_matrix:
    """Face adjacency (6 neighbours) of voxels given by their integer indices ``(n, 3)``: sparse (n, n) 0/1.

    The connectivity of ``scipy.ndimage.generate_binary_structure(3, 1)`` (:func:`face_pairs`),
    among the listed voxels only (e.g. the subcortical voxels of CIFTI brain models).
    """
    n = len(np.asarray(ijk).reshape(-1, 3))
    r, c = face_pairs(ijk)
    ones = np.ones(2 * len(r), dtype=np.int64)
    return csr_matrix((ones, (np.concatenate([r, c]), np.concatenate([c, r]))), shape=(n, n))


def smoothing_operator(part: SurfacePart) -> csr_matrix:
    """One smoothing step as a sparse (n, n) matrix (nilearn's normalised adjacency)."""
    adjacency = mesh_adjacency(part.faces, part.n_elements)
    rowsums = np.asarray(adjacency.sum(axis=1)).ravel()
    matrix = adjacency.multiply((1 - CENTER_WEIGHT) / rowsums[:, None]).tolil()
    matrix.setdiag(CENTER_WEIGHT)
    return matrix.tocsr()


class MeshMasker:
    """Smooth (optionally, per mesh part) and mask chunks of scans laid out as (k, n_elements).

    Parameters
    ----------
    mask : ndarray of bool, shape (n_elements,)
        Elements of all parts, concatenated.
    parts : list of SurfacePart
        The parts, in the run's element order.
    smoothing_fwhm : float or None
        In mm; needs a mesh for every part.
    """

    def __init__(self, mask: np.ndarray, parts: list[SurfacePart], smoothing_fwhm=None):
        self.mask = np.asarray(mask, dtype=bool).ravel()
        sizes = [p.n_elements for p in parts]
        if sum(sizes) != self.mask.size:
            raise ValueError(f"The mask has {self.mask.size} elements but the parts hold {sum(sizes)}.")
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.index = np.flatnonzero(self.mask)
        self.n_voxels = int(self.index.size)
        self.operators: list[tuple[csr_matrix, int] | None] = []
        for part in parts:
            steps = smoothing_iterations(smoothing_fwhm, part) if smoothing_fwhm else 0
            self.operators.append((smoothing_operator(part), steps) if steps else None)

    @property
    def smooths(self) -> bool:
        return any(op is not None for op in self.operators)

    def transform(self, scans: np.ndarray) -> np.ndarray:
        """Masked (and smoothed) signals, float, in element order.

        Parameters
        ----------
        scans : ndarray (k, n_elements)

        Returns
        -------
        ndarray (k, n_voxels)
        """
        scans = np.asarray(scans)
        if scans.dtype.kind != "f":
            scans = scans.astype(np.float64)
        if not self.smooths:
            return _ensure_finite(scans[:, self.index])
        scans = _ensure_finite(np.array(scans, dtype=np.float64))
        for (lo, hi), op in zip(zip(self.bounds[:-1], self.bounds[1:]), self.operators):
            if op is None:
                continue
            matrix, steps = op
            part = scans[:, lo:hi].T
            for _ in range(steps):
                part = matrix @ part
            scans[:, lo:hi] = part.T
        return scans[:, self.index]
