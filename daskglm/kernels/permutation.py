"""Permutation inference as nilearn's ``permuted_ols``, batched.

nilearn normalises the tested variate and the targets, regresses the
(orthonormalised) confounds out of both and computes, for each permutation,
``t = b √((n − k − 1) / (1 − a² − b²))`` with ``b = yᵀx`` and ``a² = ‖yᵀC‖²``
(:func:`t_scores`).  A one-sample (intercept) test flips the subjects'
signs; any other test shuffles the rows of the tested variate and the
confounds.  Both are cumulative within nilearn's per-job random streams.

Here the same sign flips / shuffles are drawn (:func:`draw_permutations`,
nilearn's streams for the same ``random_state`` and ``n_jobs``) and a batch
of P permutations of one voxel block is two or three matrix products
``(P, n) @ (n, V)`` (:func:`batch_scores`) instead of P passes over the data.
Each batch reduces to per-permutation maxima and per-voxel exceedance counts
(:func:`batch_reduce`), so memory is O(P × V_block) whatever ``n_perm``.

Cluster measures (:func:`cluster_maxima`, :func:`cluster_maps`) follow nilearn's
``calculate_cluster_measures`` (face connectivity); TFCE (nilearn's ``calculate_tfce``,
fslmaths' 100 steps) is :meth:`daskglm.kernels.topology.GraphTopology.tfce`, for voxel
grids too.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from scipy.ndimage import generate_binary_structure, label

__all__ = [
    "PermutationDesign", "prepare_design", "normalize_targets", "t_scores", "draw_permutations",
    "batch_scores", "batch_max", "batch_reduce", "cluster_maxima", "cluster_maps", "null_to_p",
    "t_threshold", "fwe_log_p", "BIN_STRUCT", "voxel_task", "spatial_task", "block_t_scores",
]

BIN_STRUCT = generate_binary_structure(3, 1)


def _normalize(m: np.ndarray, axis: int = 0) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return m / np.sqrt(np.sum(m ** 2, axis=axis, keepdims=True))


def _orthonormalize(m: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    U, s, _ = linalg.svd(m, full_matrices=False)
    return np.ascontiguousarray(U[:, : np.count_nonzero(s > tol)])


class PermutationDesign:
    """The tested variate and confounds as nilearn's ``permuted_ols`` prepares them.

    Attributes
    ----------
    tested : ndarray (n, 1)
        Normalised, confound-residualised tested variate.
    covars : ndarray (n, k) or None
        Orthonormalised confounds (the intercept added unless tested).
    intercept_test : bool
        Sign flips (True) or row permutations (False).
    n_covars_raw : int
        Confound columns before orthonormalisation (for the cluster threshold's df).
    """

    def __init__(self, tested, covars, intercept_test, n_covars_raw):
        self.tested = tested
        self.covars = covars
        self.intercept_test = intercept_test
        self.n_covars_raw = n_covars_raw


def prepare_design(tested_vars, confounding_vars=None, model_intercept: bool = True) -> PermutationDesign:
    """nilearn's handling of the intercept and confounds (warnings included)."""
    tested_vars = np.asarray(tested_vars, dtype=np.float64)
    if tested_vars.ndim == 1:
        tested_vars = tested_vars[:, None]
    n_samples = tested_vars.shape[0]
    intercept_test = tested_vars.shape[1] == np.unique(tested_vars).size == 1
    if confounding_vars is not None:
        confounding_vars = np.asarray(confounding_vars, dtype=np.float64)
        constants = [j for j in range(confounding_vars.shape[1]) if np.unique(confounding_vars[:, j]).size == 1]
        if (intercept_test and len(constants) == 1) or len(constants) > 1:
            confounding_vars = np.delete(confounding_vars, constants, axis=1)
            warnings.warn('Multiple columns across "confounding_vars" and/or "target_vars" are constant. '
                          "Only one will be used as intercept.", UserWarning, stacklevel=3)
            model_intercept = True
            if confounding_vars.size == 0:
                confounding_vars = None
        if not intercept_test and len(constants) == 1:
            intercept_test = True
    if model_intercept and not intercept_test:
        ones = np.ones((n_samples, 1))
        confounding_vars = ones if confounding_vars is None else np.hstack((confounding_vars, ones))
    if confounding_vars is None:
        return PermutationDesign(_normalize(tested_vars), None, intercept_test, 0)
    covars = _orthonormalize(confounding_vars)
    tested = _normalize(tested_vars.T, axis=1)
    tested = tested - (tested @ covars) @ covars.T
    tested = np.ascontiguousarray(_normalize(tested, axis=1).T)
    return PermutationDesign(tested, covars, intercept_test, confounding_vars.shape[1])


def normalize_targets(Y: np.ndarray, design: PermutationDesign) -> np.ndarray:
    """Targets (n, V) normalised per voxel and residualised on the confounds."""
    Y = _normalize(np.asarray(Y, dtype=np.float64), axis=0)
    if design.covars is None:
        return Y
    Y = Y - design.covars @ (design.covars.T @ Y)
    return _normalize(Y, axis=0)


def t_scores(tested: np.ndarray, Y: np.ndarray, covars: np.ndarray | None) -> np.ndarray:
    """nilearn's ``t_score_with_covars_and_normalized_design``: (V,) for one tested column."""
    k = 0 if covars is None else covars.shape[1]
    dof = Y.shape[0] - k
    b = Y.T @ tested[:, 0]
    rss = 1 - b ** 2
    if covars is not None:
        rss = rss - np.sum((Y.T @ covars) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return b * np.sqrt((dof - 1.0) / rss)


def _job_chunks(n_perm: int, n_jobs: int) -> np.ndarray:
    if n_perm > n_jobs:
        chunks = np.asarray([n_perm / n_jobs] * n_jobs, dtype=int)
        chunks[-1] += n_perm % n_jobs
        return chunks
    return np.ones(n_perm, dtype=int)


def draw_permutations(rng: np.random.RandomState, n_perm: int, n_jobs: int, n_samples: int,
                      intercept_test: bool) -> np.ndarray:
    """Every permutation as nilearn draws it for ``n_jobs`` jobs.

    Returns
    -------
    ndarray (n_perm, n)
        Cumulative signs (int8, ±1) for an intercept test, otherwise the
        cumulative row order (int) applied to the tested variate and confounds.
    """
    out = np.empty((n_perm, n_samples), dtype=np.int8 if intercept_test else np.intp)
    row = 0
    for chunk in _job_chunks(n_perm, n_jobs):
        job_rng = np.random.RandomState(rng.randint(1, np.iinfo(np.int32).max - 1))
        current = np.ones(n_samples, dtype=np.int8) if intercept_test else np.arange(n_samples)
        for _ in range(chunk):
            if intercept_test:
                current = current * (job_rng.randint(2, size=(n_samples, 1))[:, 0] * 2 - 1).astype(np.int8)
            else:
                current = current[job_rng.permutation(n_samples)]
            out[row] = current
            row += 1
    return out


def batch_scores(Y: np.ndarray, design: PermutationDesign, perms: np.ndarray) -> np.ndarray:
    """t scores (P, V) of a batch of permutations ``perms`` (P, n) on a block ``Y`` (n, V)."""
    x = design.tested[:, 0]
    C = design.covars
    k = 0 if C is None else C.shape[1]
    dof = Y.shape[0] - k
    if design.intercept_test:
        S = perms.astype(np.float64)
        b = (S * x[None]) @ Y
        a2 = 0.0 if C is None else sum(((S * C[:, j][None]) @ Y) ** 2 for j in range(k))
    else:
        b = x[perms] @ Y
        a2 = 0.0 if C is None else sum((C[:, j][perms] @ Y) ** 2 for j in range(k))
    with np.errstate(divide="ignore", invalid="ignore"):
        return b * np.sqrt((dof - 1.0) / (1 - a2 - b ** 2))


def batch_max(Y: np.ndarray, design: PermutationDesign, perms: np.ndarray, two_sided: bool) -> np.ndarray:
    """Per-permutation maxima (P,) of the (absolute) t scores of a block.

    Without confounds ``t = b √((n − 1)/(1 − b²))`` is increasing in ``b``
    (``|t|`` in ``|b|``), so the maximum is taken over ``b`` and only the P
    maxima are transformed: the same numbers as the maximum of the scores.
    """
    if design.covars is not None:
        scores = batch_scores(Y, design, perms)
        s = np.fabs(scores) if two_sided else scores
    else:
        x = design.tested[:, 0]
        S = perms.astype(np.float64) if design.intercept_test else None
        b = (S * x[None]) @ Y if design.intercept_test else x[perms] @ Y
        s = np.fabs(b) if two_sided else b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN voxels
        top = np.nanmax(s, axis=1) if s.shape[1] else np.full(s.shape[0], -np.inf)
    if design.covars is not None:
        return top
    with np.errstate(divide="ignore", invalid="ignore"):
        return top * np.sqrt((Y.shape[0] - 1.0) / (1 - top ** 2))


def batch_reduce(scores: np.ndarray, original: np.ndarray, two_sided: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-permutation maxima (P,) and per-voxel counts of permuted ≥ original (V,)."""
    s = np.fabs(scores) if two_sided else scores
    o = np.fabs(original) if two_sided else original
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN voxels
        maxima = np.nanmax(s, axis=1) if s.shape[1] else np.full(s.shape[0], -np.inf)
    counts = np.sum(s >= o[None], axis=0)
    return maxima, counts


def fwe_log_p(original: np.ndarray, h0_max: np.ndarray, two_sided: bool) -> np.ndarray:
    """nilearn's −log10 of ``(n_perm + 1 − #{h0 < score}) / (n_perm + 1)``."""
    o = np.fabs(original) if two_sided else original
    null = np.sort(h0_max)
    ranks = np.searchsorted(null, o, side="left").astype(np.float64)
    ranks[np.isnan(o)] = 0
    n_perm = len(h0_max)
    return -np.log10((n_perm + 1 - ranks) / (n_perm + 1.0))


def t_threshold(threshold: float, two_sided: bool, n_samples: int, n_covars: int) -> float:
    """Cluster-forming threshold on the t scale (nilearn's degrees of freedom)."""
    from scipy import stats  # heavy import: only for cluster inference

    df = n_samples - (1 + n_covars)
    return float(stats.t.isf(threshold / 2, df=df) if two_sided else stats.t.isf(threshold, df=df))


def _labelled(arr3d: np.ndarray, thr: float, two_sided: bool) -> tuple[np.ndarray, np.ndarray]:
    arr = arr3d.copy()
    arr[(np.abs(arr) if two_sided else arr) <= thr] = 0
    labels, n_pos = label(arr > 0, BIN_STRUCT)
    if two_sided:
        neg, _ = label(arr < 0, BIN_STRUCT)
        neg[neg > 0] += n_pos
        labels = labels + neg
    return labels, arr


def cluster_maxima(arr3d: np.ndarray, thr: float, two_sided: bool) -> tuple[int, float]:
    """Largest cluster size and mass (nilearn's ``calculate_cluster_measures``)."""
    labels, arr = _labelled(arr3d, thr, two_sided)
    flat = labels.ravel()
    if not flat.any():
        return 0, 0.0
    sizes = np.bincount(flat)[1:]
    masses = np.bincount(flat, weights=np.abs(arr.ravel()) - thr)[1:]
    return int(sizes.max()), float(max(masses.max(), 0.0))


def cluster_maps(arr3d: np.ndarray, thr: float, two_sided: bool, h0_size: np.ndarray, h0_mass: np.ndarray):
    """Cluster size, mass and their FWE p maps (3D) of the original scores (nilearn's layout)."""
    pos, _ = label(arr3d > thr, BIN_STRUCT)
    labels = pos
    if two_sided:
        neg, _ = label(arr3d < -thr, BIN_STRUCT)
        labels = np.where(pos > 0, pos + neg.max(), 0) + neg
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=1).astype(np.float64)
    sizes[0] = 0
    masses = np.bincount(flat, weights=np.abs(np.nan_to_num(arr3d.ravel())) - thr, minlength=1)
    masses[0] = 0
    out = {}
    for name, values, null in (("size", sizes, h0_size), ("mass", masses, h0_mass)):
        p = null_to_p(values, null)
        out[name] = values[labels]
        out[f"p_{name}"] = p[labels]
    return out


def null_to_p(test_values: np.ndarray, null_array: np.ndarray) -> np.ndarray:
    """nilearn's ``null_to_p(..., "larger")``: clipped to ``[1/n, 1 − 1/n]``."""
    null = np.sort(np.asarray(null_array, dtype=np.float64))
    p = 1 - np.searchsorted(null, np.atleast_1d(test_values), side="left") / len(null)
    smallest = max(np.finfo(float).eps, 1.0 / len(null))
    return np.maximum(smallest, np.minimum(p, 1.0 - smallest))


# ------------------------------------------------- the dask tasks (numpy only)
def block_t_scores(Yb: np.ndarray, design: PermutationDesign) -> np.ndarray:
    """Observed t scores of a normalised block."""
    return t_scores(design.tested, Yb, design.covars)


def voxel_task(Yb, design: PermutationDesign, perms, original, two_sided: bool, want_counts: bool):
    """One (permutation batch, voxel block): block maxima (P,) and counts (V_block,) or an empty array."""
    if not want_counts:
        return batch_max(Yb, design, perms, two_sided), np.zeros(0, dtype=np.int64)
    return batch_reduce(batch_scores(Yb, design, perms), original, two_sided)


def spatial_task(blocks, design: PermutationDesign, perms, topology, two_sided: bool, with_tfce: bool,
                 threshold_t: float | None) -> np.ndarray:
    """One permutation batch over whole maps: (4, P) maxima [|t|, TFCE, cluster size, cluster mass].

    ``topology`` knows which elements touch (:mod:`daskglm.kernels.topology`:
    voxels of a 3-D mask, or a mesh / grayordinate graph).
    """
    Y = np.concatenate(blocks, axis=1)
    out = np.zeros((4, len(perms)))
    for i, scores in enumerate(batch_scores(Y, design, perms)):
        out[0, i] = np.nanmax(np.fabs(scores) if two_sided else scores)
        if with_tfce:
            out[1, i] = np.nanmax(np.fabs(topology.tfce(scores, two_sided)))
        if threshold_t is not None:
            out[2, i], out[3, i] = topology.cluster_maxima(scores, threshold_t, two_sided)
    return out
