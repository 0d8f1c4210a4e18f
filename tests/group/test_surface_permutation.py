"""TFCE and cluster inference on graphs (meshes, grayordinates) against nilearn's voxel-grid inference.

:class:`daskglm.kernels.topology.GraphTopology` is checked where nilearn
has a reference: on a graph that *is* a voxel grid (the face neighbours of
the voxels of a 3-D mask, :func:`daskglm.kernels.mesh.voxel_adjacency`)
its TFCE equals nilearn's own ``calculate_tfce`` on the volume (as does
:class:`~daskglm.kernels.topology.VoxelTopology`'s) and its cluster measures
nilearn's ``calculate_cluster_measures`` arithmetic on the volume, and end to end,
``non_parametric_inference`` on CIFTI maps made only of those voxels
equals nilearn's ``non_parametric_inference`` on the NIfTI maps (same
``random_state``: the same sign flips).  On a real mesh (fsaverage5) the
TFCE map is the graph TFCE of the t map and the FWE maps are reproducible.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel import cifti2
from nilearn.glm.second_level import non_parametric_inference as nilearn_npi
from nilearn.mass_univariate._utils import calculate_tfce  # nilearn's TFCE: the reference
from scipy.ndimage import gaussian_filter, generate_binary_structure

import daskglm
from daskglm.kernels.mesh import mesh_adjacency, voxel_adjacency
from daskglm.kernels.topology import GraphTopology, VoxelTopology

SHAPE = (9, 8, 7)


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True
    mask[4, 2:5, 2] = False
    return mask


def _smooth_scores(seed: int) -> np.ndarray:
    return gaussian_filter(np.random.default_rng(seed).normal(size=SHAPE), 1.0) * 6


def test_voxel_adjacency_is_face_connectivity():
    ijk = np.argwhere(_mask())
    ours = voxel_adjacency(ijk).toarray()
    brute = (np.abs(ijk[:, None, :] - ijk[None, :, :]).sum(axis=2) == 1).astype(int)
    np.testing.assert_array_equal(ours, brute)


def test_mesh_adjacency_is_the_faces_edges():
    faces = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4], [0, 2, 4]])
    edges = {tuple(sorted((int(f[a]), int(f[b])))) for f in faces for a, b in ((0, 1), (0, 2), (1, 2))}
    dense = np.zeros((5, 5), dtype=int)
    for u, v in edges:
        dense[u, v] = dense[v, u] = 1
    np.testing.assert_array_equal(mesh_adjacency(faces, 5).toarray(), dense)


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_graph_tfce_and_clusters_equal_nilearns_on_a_voxel_grid(two_sided, seed):
    mask = _mask()
    scores = _smooth_scores(seed)[mask]
    graph = GraphTopology(voxel_adjacency(np.argwhere(mask)))
    grid = VoxelTopology(mask)
    volume = np.zeros(mask.shape)
    volume[mask] = scores
    nilearns = calculate_tfce(volume[..., None], generate_binary_structure(3, 1),
                              two_sided_test=two_sided)[..., 0][mask]
    np.testing.assert_allclose(grid.tfce(scores, two_sided), nilearns, rtol=1e-10)
    np.testing.assert_allclose(graph.tfce(scores, two_sided), nilearns, rtol=1e-10)
    assert np.count_nonzero(nilearns) > mask.sum() // 4
    thr = 1.0
    assert graph.cluster_maxima(scores, thr, two_sided) == pytest.approx(grid.cluster_maxima(scores, thr, two_sided))
    null = np.random.default_rng(seed).uniform(0, 40, size=50)
    ours = graph.cluster_maps(scores, thr, two_sided, null, null * 2)
    ref = grid.cluster_maps(scores, thr, two_sided, null, null * 2)
    for name in ("size", "mass", "p_size", "p_mass"):
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-10, err_msg=name)


def _volume_cifti(values: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> cifti2.Cifti2Image:
    axis = cifti2.BrainModelAxis.from_mask(mask, name="ThalamusLeft", affine=affine)
    header = cifti2.Cifti2Header.from_axes((cifti2.ScalarAxis(["effect"]), axis))
    return cifti2.Cifti2Image(values[mask][None].astype(np.float32), header=header)


def test_cifti_tfce_and_clusters_equal_nilearns_volume_inference():
    """CIFTI grayordinates that are the voxels of a mask: the same maps as nilearn's NIfTI inference."""
    mask, affine, n = _mask(), np.diag([2.0, 2.0, 2.0, 1.0]), 10
    rng = np.random.default_rng(3)
    volumes = [(gaussian_filter(rng.normal(size=SHAPE), 1.0) * 3 + 0.6 * mask).astype(np.float32)
               for _ in range(n)]
    niftis = [nib.Nifti1Image(v, affine) for v in volumes]
    ciftis = [_volume_cifti(v, mask, affine) for v in volumes]
    design = pd.DataFrame({"intercept": np.ones(n)})
    kwargs = {"design_matrix": design, "n_perm": 60, "random_state": 5, "tfce": True, "threshold": 0.01,
              "two_sided_test": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = nilearn_npi(niftis, mask=nib.Nifti1Image(mask.astype(np.uint8), affine), **kwargs)
        ours = daskglm.non_parametric_inference(ciftis, **kwargs)
    assert set(ours) == set(ref)
    for key, img in ours.items():
        assert isinstance(img, cifti2.Cifti2Image) and img.header.get_axis(1) == ciftis[0].header.get_axis(1)
        expected = np.asarray(ref[key].dataobj)[mask]
        np.testing.assert_allclose(np.asarray(img.dataobj)[0], expected, rtol=1e-4, atol=1e-4, err_msg=key)


def test_surface_tfce_is_the_graph_tfce_of_the_t_map_and_reproducible():
    from nilearn.conftest import _make_mesh
    from nilearn.surface import SurfaceImage

    mesh = _make_mesh()
    rng = np.random.default_rng(0)
    maps = [SurfaceImage(mesh=mesh, data={p: rng.normal(size=mesh.parts[p].n_vertices) + 1.0
                                          for p in mesh.parts}) for _ in range(7)]
    design = pd.DataFrame({"intercept": np.ones(7)})
    kwargs = {"design_matrix": design, "n_perm": 40, "tfce": True, "threshold": 0.05}
    first = daskglm.non_parametric_inference(maps, random_state=1, **kwargs)
    again = daskglm.non_parametric_inference(maps, random_state=1, **kwargs)
    other = daskglm.non_parametric_inference(maps, random_state=2, **kwargs)

    def flat(img):
        return np.concatenate([np.ravel(img.data.parts[p]) for p in mesh.parts])

    adjacency = __import__("scipy.sparse", fromlist=["block_diag"]).block_diag(
        [mesh_adjacency(mesh.parts[p].faces, mesh.parts[p].n_vertices) for p in mesh.parts])
    t = flat(first["t"])
    np.testing.assert_allclose(flat(first["tfce"]), GraphTopology(adjacency).tfce(t, False), rtol=1e-10)
    for key in first:
        np.testing.assert_array_equal(flat(first[key]), flat(again[key]))
    assert not np.array_equal(flat(first["logp_max_tfce"]), flat(other["logp_max_tfce"]))


def _tfce_height_by_height(adjacency, scores, two_sided, E=0.5, H=2.0):
    """nilearn's ``calculate_tfce`` steps, literally: each height labelled on its own."""
    from scipy.sparse.csgraph import connected_components

    out = np.zeros(scores.size)
    max_score = np.nanmax(np.abs(scores)) if two_sided else np.nanmax(scores)
    for sign in ([-1, 1] if two_sided else [1]):
        temp = scores * sign
        for thr in np.linspace(0, max_score, 101)[1:]:
            active = ~(temp < thr) & (temp != 0)
            if not active.any():
                break
            sub = adjacency[active][:, active]
            _, comp = connected_components(sub, directed=False)
            out[active] += sign * np.bincount(comp)[comp] ** E * thr ** H
    return out


@pytest.mark.parametrize("two_sided", [False, True])
def test_graph_tfce_equals_labelling_each_height_on_its_own(two_sided):
    """On an irregular graph with NaN and zero scores (the nested build joins components across heights)."""
    from scipy.sparse import random as sparse_random

    rng = np.random.default_rng(11)
    n = 400
    upper = sparse_random(n, n, density=0.006, random_state=12, format="coo")
    adjacency = ((upper + upper.T) > 0).astype(np.int8).tocsr()
    adjacency.setdiag(0)
    adjacency.eliminate_zeros()
    scores = rng.normal(size=n) * 2
    scores[rng.choice(n, 15, replace=False)] = 0.0
    scores[rng.choice(n, 5, replace=False)] = np.nan
    ours = GraphTopology(adjacency).tfce(scores, two_sided)
    reference = _tfce_height_by_height(adjacency, scores, two_sided)
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=0)
    assert np.count_nonzero(ours) > n // 2


def test_one_sided_tfce_of_a_map_without_positive_scores_is_zero_as_nilearns():
    mask = _mask()
    volume = -np.abs(_smooth_scores(0)) - 0.01
    volume[~mask] = 0
    nilearns = calculate_tfce(volume[..., None], generate_binary_structure(3, 1), two_sided_test=False)[..., 0]
    assert not nilearns.any()
    assert not VoxelTopology(mask).tfce(volume[mask], False).any()
    assert not GraphTopology(voxel_adjacency(np.argwhere(mask))).tfce(volume[mask], False).any()
