"""Which elements touch: clusters and TFCE on a voxel grid or on a graph (mesh, grayordinates).

Permutation inference beyond the voxel level (TFCE, cluster size and mass)
needs the neighbours of each element.  A *topology* answers the three
questions :func:`daskglm.kernels.permutation.spatial_task` asks of in-mask
scores ``(V,)``:

- ``tfce(scores, two_sided)``: the TFCE map ``(V,)``;
- ``cluster_maxima(scores, thr, two_sided)``: the largest cluster's size and mass;
- ``cluster_maps(scores, thr, two_sided, h0_size, h0_mass)``: cluster size,
  mass and their FWE p-values per element.

:class:`VoxelTopology` is nilearn's for clusters (``scipy.ndimage.label`` with face
connectivity on the 3-D mask; :mod:`daskglm.kernels.permutation`) and the
graph's for TFCE (the mask's face neighbours, :func:`daskglm.kernels.mesh.face_pairs`).
:class:`GraphTopology` is the same arithmetic on a sparse adjacency matrix
(cluster components by :func:`scipy.sparse.csgraph.connected_components`;
TFCE's nested components of its 100 heights built once, top down): the
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

from daskglm.kernels.mesh import face_pairs
from daskglm.kernels.permutation import cluster_maps, cluster_maxima, null_to_p

__all__ = ["VoxelTopology", "GraphTopology"]


class VoxelTopology:
    """In-mask voxels of a 3-D mask, face-connected (nilearn's ``permuted_ols``).

    Parameters
    ----------
    mask : ndarray of bool (x, y, z)
    """

    def __init__(self, mask: np.ndarray):
        self.mask = np.asarray(mask, dtype=bool)
        self._graph = None

    def _volume(self, scores: np.ndarray) -> np.ndarray:
        vol = np.zeros(self.mask.shape)
        vol[self.mask] = scores
        return vol

    def tfce(self, scores: np.ndarray, two_sided: bool) -> np.ndarray:
        """nilearn's ``calculate_tfce`` on the face-connected voxels, built as :meth:`GraphTopology.tfce`.

        The same map as labelling the volume at each of the 100 heights (to rounding), ~6x
        faster at 2 mm (0.15 vs 0.87 s per one-sided map over 231k voxels).
        """
        if self._graph is None:  # built on first use: cheap (grid edges), and kept for the next maps
            self._graph = GraphTopology.from_edges(int(self.mask.sum()), *face_pairs(np.argwhere(self.mask)))
        return self._graph.tfce(scores, two_sided)

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

    @classmethod
    def from_edges(cls, n: int, u: np.ndarray, v: np.ndarray) -> GraphTopology:
        """The topology of ``n`` elements and the edges ``(u[i], v[i])``, each listed once."""
        topology = cls.__new__(cls)
        topology.n = int(n)
        topology.u = np.asarray(u, dtype=np.int64)
        topology.v = np.asarray(v, dtype=np.int64)
        return topology

    def labels(self, active: np.ndarray) -> np.ndarray:
        """Component label (1..) of each active element, 0 elsewhere."""
        u, v = self.u, self.v
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
        # nilearn takes the maximum over the whole volume, whose background is 0: a one-sided map
        # with no positive score has heights 0 and no TFCE
        max_score = np.nanmax(np.abs(scores)) if two_sided else max(np.nanmax(scores), 0.0)
        heights = np.linspace(0, max_score, 101)[1:]
        for sign in ([-1, 1] if two_sided else [1]):
            temp = scores * sign
            # nilearn zeroes scores below each height, then labels what is left: NaN included, 0 not
            level = np.where(np.isnan(temp), np.inf, temp)
            level[temp == 0] = -np.inf
            for thr, members, sizes in self._nested_components(level, heights):
                out[members] += sign * sizes ** E * thr ** H
        return out

    def _nested_components(self, level: np.ndarray, heights: np.ndarray):
        """``(height, active elements, size of each one's component)`` at each height with active elements.

        An element is active at heights up to its ``level``, an edge up to the lower level of its
        two ends, so the components at a height hold those at every higher one.  They are built
        once, from the highest height down: each step gives the newly active elements their own
        labels and joins the components that the newly active edges connect (a connected
        components pass over a graph of components, not of elements).
        """
        order = np.argsort(-level, kind="stable")
        rising = -level[order]  # ascending: the elements active at ``thr`` are order[:count]
        weight = np.minimum(level[self.u], level[self.v])
        edge_order = np.argsort(-weight, kind="stable")
        edge_rising = -weight[edge_order]
        eu, ev = self.u[edge_order], self.v[edge_order]
        comp = np.full(self.n, -1, dtype=np.int64)
        n_comp = n_active = n_edges = 0
        for thr in np.sort(heights)[::-1]:
            now_active = int(np.searchsorted(rising, -thr, side="right"))
            if now_active == 0:
                continue
            now_edges = int(np.searchsorted(edge_rising, -thr, side="right"))
            comp[order[n_active:now_active]] = np.arange(n_comp, n_comp + now_active - n_active)
            n_comp += now_active - n_active
            members = order[:now_active]
            a, b = comp[eu[n_edges:now_edges]], comp[ev[n_edges:now_edges]]
            joined = a != b
            if joined.any():
                n_comp, relabel = _join(n_comp, a[joined], b[joined])
                comp[members] = relabel[comp[members]]
            labels = comp[members]
            n_active, n_edges = now_active, now_edges
            yield thr, members, np.bincount(labels, minlength=n_comp)[labels]

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


def _join(n: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    """Components of ``n`` nodes joined by the edges ``(a, b)``: ``(count, compact label of each node)``.

    Label propagation with pointer jumping in numpy: each round hooks every edge's larger root
    onto the smaller one, then flattens the trees; it ends when every edge joins equal roots.
    (``connected_components`` gives the same partition, but its sparse-matrix checks cost more
    than the few edges TFCE adds per height.)
    """
    parent = np.arange(n)
    while True:
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not differ.any():
            break
        ra, rb = ra[differ], rb[differ]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    is_root = parent == np.arange(n)  # a root is its component's smallest node
    return int(is_root.sum()), (np.cumsum(is_root) - 1)[parent]
