"""Which elements touch: clusters and TFCE on a voxel grid or on a graph (mesh, grayordinates).

Permutation inference beyond the voxel level (TFCE, cluster size and mass)
needs the neighbours of each element.  A *topology* answers the three
questions :func:`daskglm.kernels.permutation.spatial_task` asks of in-mask
scores ``(V,)``:

- ``tfce(scores, two_sided)``: the TFCE map ``(V,)``;
- ``cluster_maxima(scores, thr, two_sided)``: the largest cluster's size and mass;
- ``cluster_maps(scores, thr, two_sided, h0_size, h0_mass)``: cluster size,
  mass and their FWE p-values per element.

:class:`VoxelTopology` is nilearn's (``scipy.ndimage.label`` with face
connectivity on the 3-D mask; :mod:`daskglm.kernels.permutation`).
:class:`GraphTopology` is the same arithmetic on a sparse adjacency matrix
(components by :func:`scipy.sparse.csgraph.connected_components`): the
edges of a triangle mesh (:func:`daskglm.kernels.mesh.mesh_adjacency`), the
face neighbours of listed voxels (:func:`daskglm.kernels.mesh.voxel_adjacency`),
or both block-diagonally (CIFTI grayordinates).  Steps as nilearn's
``calculate_tfce`` (100 heights, ``E = 0.5``, ``H = 2``, no ``dh`` factor) and
``calculate_cluster_measures``; an element's "size" is its count (vertices
are not weighted by area).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

from daskglm.kernels.permutation import cluster_maps, cluster_maxima, null_to_p, tfce

__all__ = ["VoxelTopology", "GraphTopology"]


class VoxelTopology:
    """In-mask voxels of a 3-D mask, face-connected (nilearn's ``permuted_ols``).

    Parameters
    ----------
    mask : ndarray of bool (x, y, z)
    """

    def __init__(self, mask: np.ndarray):
        self.mask = np.asarray(mask, dtype=bool)

    def _volume(self, scores: np.ndarray) -> np.ndarray:
        vol = np.zeros(self.mask.shape)
        vol[self.mask] = scores
        return vol

    def tfce(self, scores: np.ndarray, two_sided: bool) -> np.ndarray:
        return tfce(self._volume(scores), two_sided)[self.mask]

    def cluster_maxima(self, scores: np.ndarray, thr: float, two_sided: bool) -> tuple[int, float]:
        return cluster_maxima(self._volume(scores), thr, two_sided)

    def cluster_maps(self, scores, thr: float, two_sided: bool, h0_size, h0_mass) -> dict[str, np.ndarray]:
        maps = cluster_maps(self._volume(scores), thr, two_sided, h0_size, h0_mass)
        return {name: values[self.mask] for name, values in maps.items()}


class GraphTopology:
    """In-mask elements connected by the edges of a sparse adjacency matrix.

    Parameters
    ----------
    adjacency : scipy sparse matrix (V, V)
        Symmetric; non-zero = neighbours (the diagonal is ignored).
    """

    def __init__(self, adjacency):
        coo = coo_matrix(adjacency)
        keep = coo.row < coo.col
        self.n = int(coo.shape[0])
        self.u = coo.row[keep].astype(np.int64)
        self.v = coo.col[keep].astype(np.int64)

    def labels(self, active: np.ndarray, edges: tuple | None = None) -> np.ndarray:
        """Component label (1..) of each active element, 0 elsewhere.

        ``edges``: a ``(u, v)`` subset of the graph's edges holding every edge
        between active elements (TFCE narrows them height by height).
        """
        u, v = (self.u, self.v) if edges is None else edges
        keep = active[u] & active[v]
        index = np.flatnonzero(active)
        position = np.cumsum(active) - 1  # an active element's row in the graph of active elements
        graph = csr_matrix((np.ones(int(keep.sum()), dtype=np.int8), (position[u[keep]], position[v[keep]])),
                           shape=(index.size, index.size))
        _, comp = connected_components(graph, directed=False)
        out = np.zeros(self.n, dtype=np.int64)
        out[index] = comp + 1
        return out

    def tfce(self, scores: np.ndarray, two_sided: bool, E: float = 0.5, H: float = 2.0) -> np.ndarray:
        """nilearn's ``calculate_tfce`` steps on the graph."""
        scores = np.asarray(scores, dtype=np.float64)
        out = np.zeros(self.n)
        max_score = np.nanmax(np.abs(scores)) if two_sided else np.nanmax(scores)
        for sign in ([-1, 1] if two_sided else [1]):
            temp = scores * sign
            u, v = self.u, self.v
            for thr in np.linspace(0, max_score, 101)[1:]:
                # nilearn zeroes scores below each height; what is left (NaN included) is labelled
                active = ~(temp < thr) & (temp != 0)
                if not active.any():
                    break
                keep = active[u] & active[v]  # the active sets shrink with the height, and so do the edges
                u, v = u[keep], v[keep]
                lab = self.labels(active, (u, v))
                counts = np.bincount(lab)
                out[active] += sign * counts[lab[active]] ** E * thr ** H
        return out

    def _clusters(self, scores: np.ndarray, thr: float, two_sided: bool) -> np.ndarray:
        pos = self.labels(scores > thr)
        if not two_sided:
            return pos
        neg = self.labels(scores < -thr)
        return np.where(pos > 0, pos + neg.max(initial=0), 0) + neg

    def cluster_maxima(self, scores: np.ndarray, thr: float, two_sided: bool) -> tuple[int, float]:
        """Largest cluster size and mass (nilearn's ``calculate_cluster_measures``)."""
        scores = np.asarray(scores, dtype=np.float64)
        lab = self._clusters(scores, thr, two_sided)
        if not lab.any():
            return 0, 0.0
        sizes = np.bincount(lab)[1:]
        masses = np.bincount(lab, weights=np.abs(np.nan_to_num(scores)) - thr)[1:]
        return int(sizes.max()), float(max(masses.max(), 0.0))

    def cluster_maps(self, scores, thr: float, two_sided: bool, h0_size, h0_mass) -> dict[str, np.ndarray]:
        """Cluster size, mass and their FWE p per element (nilearn's layout, as :func:`cluster_maps`)."""
        scores = np.asarray(scores, dtype=np.float64)
        lab = self._clusters(scores, thr, two_sided)
        sizes = np.bincount(lab, minlength=1).astype(np.float64)
        sizes[0] = 0
        masses = np.bincount(lab, weights=np.abs(np.nan_to_num(scores)) - thr, minlength=1)
        masses[0] = 0
        out = {}
        for name, values, null in (("size", sizes, h0_size), ("mass", masses, h0_mass)):
            out[name] = values[lab]
            out[f"p_{name}"] = null_to_p(values, null)[lab]
        return out
