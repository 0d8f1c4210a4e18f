"""``non_parametric_inference``: nilearn's permutation inference, as dask tasks.

nilearn 0.14.1's signature and outputs.  The permutations are drawn in the
client exactly as nilearn's ``permuted_ols`` draws them for the same
``random_state`` and ``n_jobs`` (so, with the same arguments, the maps are
nilearn's), then split into batches:

* voxel-level inference: one task per (permutation batch, voxel block),
  each a few ``(P, n) @ (n, V_block)`` products reduced to the batch's
  per-permutation block maxima and, with ``uncorrected=True``, per-voxel
  exceedance counts; maxima are max-reduced over blocks, counts summed over
  batches (tree reductions), so no task holds more than one block × batch;
* TFCE / cluster inference (whole maps needed): one task per batch over all
  voxels, each returning per-permutation maxima (voxel, TFCE, cluster size,
  cluster mass).

FWE p-values are nilearn's ``(n_perm + 1 − #{max < score}) / (n_perm + 1)``,
computed from the gathered maxima (:func:`daskglm.kernels.permutation.fwe_log_p`).
"""

from __future__ import annotations

import math
import warnings

import dask
import dask.array as da
import numpy as np

from daskglm.compat.nilearn import check_group_confounds, check_params, load_tables
from daskglm.errors import GroupInputError
from daskglm.graph.resources import compute, persist
from daskglm.group.graph import stack_rows
from daskglm.group.inputs import effect_items, resolve_input, sample_map, subject_maps
from daskglm.group.maskers import CiftiMasker, check_mask_kind, input_kind, masker_space, space_topology
from daskglm.group.model import second_level_con_val
from daskglm.io.cifti import is_cifti
from daskglm.kernels import permutation as K
from daskglm.space.base import masker_mask

__all__ = ["non_parametric_inference"]

#: Elements (permutations × voxels) of a batch's score array (32 MiB).
BATCH_ELEMENTS = 2 ** 22


def _masker(mask, smoothing_fwhm, verbose, kind: str):
    """nilearn's masker for the maps' kind (a given masker cloned), daskglm's for CIFTI maps."""
    from joblib import Memory
    from nilearn.maskers import NiftiMasker, SurfaceMasker
    from sklearn.base import clone

    if isinstance(mask, (NiftiMasker, SurfaceMasker, CiftiMasker)):
        masker = CiftiMasker(mask.mask_img, mask.smoothing_fwhm) if isinstance(mask, CiftiMasker) else clone(mask)
        if smoothing_fwhm is not None and masker.smoothing_fwhm is not None:
            warnings.warn("Parameter 'smoothing_fwhm' of the masker overridden.", stacklevel=3)
            masker.smoothing_fwhm = smoothing_fwhm
        return masker
    if kind == "cifti":
        return CiftiMasker(mask, smoothing_fwhm)
    factory = SurfaceMasker if kind == "surface" else NiftiMasker
    return factory(mask_img=mask, smoothing_fwhm=smoothing_fwhm, memory=Memory(None),
                   verbose=max(0, verbose - 1), memory_level=1, standardize=None)


def _n_jobs(n_jobs: int) -> int:
    import joblib

    if n_jobs == 0:
        raise GroupInputError("'n_jobs == 0' is not a valid choice. Please provide a positive number of CPUs, "
                              "or -1 for all CPUs, or a negative number (-i) for 'all but (i-1)' CPUs "
                              "(joblib conventions).")
    return max(1, joblib.cpu_count() - int(n_jobs) + 1) if n_jobs < 0 else min(n_jobs, joblib.cpu_count())


def _design_parts(design_matrix, contrast):
    names = design_matrix.columns.tolist()
    contrast = np.asarray(contrast)
    if contrast.ndim != 1 or contrast.shape[0] != len(names):
        raise GroupInputError(f"The second-level contrast must be a vector over the design's {len(names)} "
                              f"columns {names}; got shape {contrast.shape}.")
    tested = np.dot(design_matrix, contrast)
    rest = [n for n, c in zip(names, contrast) if not bool(c)]
    confounds = np.asarray(design_matrix[rest]) if rest else None
    if not (np.issubdtype(np.asarray(tested).dtype, np.number) or np.asarray(tested).dtype == bool):
        raise GroupInputError("'tested_vars' must contain numerical or boolean values.")
    return np.asarray(tested, dtype=np.float64), confounds


def _voxel_level(Yn, design, perms, original, two_sided, want_counts):
    """Lazy h0 voxel maxima (n_perm,) and exceedance counts (V,) (or None)."""
    bounds = np.cumsum((0, *Yn.chunks[1]))
    batch = max(1, BATCH_ELEMENTS // max(Yn.chunks[1]))
    starts = list(range(0, len(perms), batch))
    block_maxima, block_counts = [], []
    for j, block in enumerate(Yn.to_delayed()[0]):
        # one graph key per block (not a copy per task); only the counts need it
        orig = dask.delayed(original[bounds[j]:bounds[j + 1]]) if want_counts else None
        n_orig = bounds[j + 1] - bounds[j]
        row_max, row_counts = [], []
        for s in starts:
            task = dask.delayed(K.voxel_task, nout=2, pure=True)(
                block, design, perms[s:s + batch], orig, two_sided, want_counts)
            row_max.append(da.from_delayed(task[0], (len(perms[s:s + batch]),), dtype=np.float64))
            if want_counts:
                row_counts.append(da.from_delayed(task[1], (n_orig,), dtype=np.int64))
        block_maxima.append(da.concatenate(row_max))
        if want_counts:
            block_counts.append(da.stack(row_counts).sum(axis=0))
    h0 = da.stack(block_maxima).max(axis=0)
    return h0, (da.concatenate(block_counts) if want_counts else None)


def _spatial_level(Yn, design, perms, topology, two_sided, tfce, threshold_t):
    """Lazy (4, n_perm) maxima [voxel, TFCE, cluster size, cluster mass]."""
    blocks = list(Yn.to_delayed()[0])
    topology = dask.delayed(topology)  # one graph key, not a copy per task
    batch = max(1, min(64, BATCH_ELEMENTS // Yn.shape[1]))
    parts = []
    for s in range(0, len(perms), batch):
        task = dask.delayed(K.spatial_task, pure=True)(blocks, design, perms[s:s + batch], topology, two_sided,
                                                      tfce, threshold_t)
        parts.append(da.from_delayed(task, (4, len(perms[s:s + batch])), dtype=np.float64))
    return da.concatenate(parts, axis=1)


def _group_data(second_level_input, confounds, design_matrix, first_level_contrast, mask, smoothing_fwhm,
                verbose, subjects, storage_options):
    group = resolve_input(second_level_input, None, design_matrix, subjects, storage_options)
    check_group_confounds(confounds)
    kind = input_kind(group.items)
    check_mask_kind(mask, kind)
    masker = _masker(mask, smoothing_fwhm, verbose, kind)
    given = masker.mask_img is not None
    sample = None if given and group.uses_models else (
        group.items[0] if given and group.kind == "images" else sample_map(group))
    if kind == "cifti" and sample is None and not is_cifti(masker_mask(masker.mask_img)):
        sample = sample_map(group)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Generation of a mask.*")
        masker.fit(sample)
    if group.uses_models and first_level_contrast is None:
        raise GroupInputError("If 'second_level_input' was a list of FirstLevelModel, then "
                              "first_level_contrast is mandatory. It corresponds to the second_level_contrast "
                              "argument of the compute_contrast method of FirstLevelModel.")
    items = effect_items(group, first_level_contrast)
    return items, group.uses_models, masker


def non_parametric_inference(
    second_level_input, confounds=None, design_matrix=None, second_level_contrast=None,
    first_level_contrast=None, mask=None, smoothing_fwhm=None, model_intercept=True, n_perm=10000,
    two_sided_test=False, random_state=None, n_jobs=1, verbose=0, threshold=None, tfce=False, *,
    uncorrected: bool = False, subjects=None, storage_options: dict | None = None, mesh=None,
):
    """Permutation inference on a second-level contrast (nilearn 0.14.1's, on dask).

    Parameters
    ----------
    second_level_input, confounds, design_matrix, second_level_contrast, first_level_contrast, mask, \
smoothing_fwhm, model_intercept, n_perm, two_sided_test, random_state, n_jobs, verbose, threshold, tfce
        As :func:`nilearn.glm.second_level.non_parametric_inference`;
        ``second_level_input`` may also be a daskglm study store or CIFTI-2
        dense scalar maps.  ``n_jobs`` only fixes how the permutations are
        drawn (nilearn's per-job random streams); dask's scheduler runs the
        batches.  On ``SurfaceImage`` and CIFTI maps ``tfce`` and
        ``threshold`` run on the mesh (:mod:`daskglm.kernels.topology`),
        where nilearn 0.14.1 warns and skips them.
    uncorrected : bool, default=False
        Also return ``logp_t``, the uncorrected −log10 p of each voxel
        ``(1 + #{t_perm ≥ t}) / (1 + n_perm)`` (a dict is returned).
    subjects : list of str, optional
        Subjects of a study store.
    storage_options : dict, optional
        fsspec options for store URLs.
    mesh : nilearn PolyMesh, dict or (left, right) pair of .surf.gii files, optional
        CIFTI maps only, with ``tfce`` or ``threshold``: the surfaces their
        cortex lies on (a CIFTI file holds no mesh), e.g. the fsLR 32k
        midthickness pair.  The subcortical voxels of all volume structures
        are one volume, face-connected (6 neighbours) across structure
        boundaries, as nilearn connects a NIfTI map's voxels (and Connectome
        Workbench's ``-cifti-find-clusters`` the volume part); no edge joins
        them to the cortex.  Checked before any map is read.

    Returns
    -------
    Nifti1Image or dict
        nilearn's: the voxel-level FWE −log10 p image, or (with ``tfce`` or
        ``threshold``, or ``uncorrected``) a dict with ``t``, ``logp_max_t``
        and ``tfce``/``logp_max_tfce``, ``size``/``logp_max_size``/
        ``mass``/``logp_max_mass`` as requested.
    """
    from sklearn.utils import check_random_state

    check_params({k: v for k, v in locals().items()
                  if k not in ("uncorrected", "subjects", "storage_options", "mesh")})
    if design_matrix is not None and not isinstance(design_matrix, (str, type(None))):
        from pathlib import Path

        import pandas as pd

        if not isinstance(design_matrix, (Path, pd.DataFrame)):
            raise GroupInputError("'design_matrix' must be a str, pathlib.Path or a pandas.DataFrame.\n"
                                  f"Got {design_matrix.__class__.__name__}")
    items, models, masker = _group_data(second_level_input, confounds, design_matrix, first_level_contrast,
                                        mask, smoothing_fwhm, verbose, subjects, storage_options)
    design_matrix = load_tables(design_matrix, "design_matrix")[0]
    contrast = second_level_con_val(second_level_contrast, design_matrix)
    if len(items) != design_matrix.shape[0]:
        raise GroupInputError("'design_matrix' does not match the number of maps considered. "
                              f"{design_matrix.shape[0]} rows in design matrix do not match "
                              f"with {len(items)} maps.")
    tested, confounding = _design_parts(design_matrix, contrast)
    # which elements touch (a CIFTI mesh checked): before any map is read
    topology = space_topology(masker_space(masker), mesh) if tfce or threshold is not None else None
    n_jobs = _n_jobs(n_jobs)
    design = K.prepare_design(tested, confounding, model_intercept)
    rows = subject_maps(items, masker, masker.n_elements_, first_level_contrast, "effect_size", models)
    Y = stack_rows(rows)
    zero_voxels = da.all(Y == 0, axis=0)
    Yn = Y.map_blocks(K.normalize_targets, design, dtype=np.float64)
    Yn, zero_voxels = persist(Yn, zero_voxels)  # the maps are read once
    zero = zero_voxels.any()
    original, has_zero = compute(Yn.map_blocks(K.block_t_scores, design, drop_axis=0, dtype=np.float64), zero)
    if has_zero:
        warnings.warn("Some descriptors in 'target_vars' have zeros across all samples. These descriptors "
                      "will be ignored during null distribution generation.", stacklevel=2)
    return _inference(Yn, design, original, masker, topology, n_perm, n_jobs, two_sided_test, random_state,
                      threshold, tfce, uncorrected, check_random_state)


#: Maps beyond which the distinct sign flips (2**n) or row orders are never fewer than the draws asked.
MAX_COUNTED_MAPS = 24


def _warn_few_distinct_draws(n_perm: int, n: int, design) -> None:
    """Warn when ``n_perm`` exceeds the distinct sign flips (2**n) or row orders the design allows."""
    if n > MAX_COUNTED_MAPS:
        return
    if design.intercept_test:
        distinct, what = 2 ** n, f"2**{n} = {2 ** n} distinct sign flips of {n} maps"
    else:  # orders of the tested variate: equal values (e.g. group labels) swapped give the same one
        _, counts = np.unique(np.round(design.tested[:, 0], 10), return_counts=True)
        distinct = math.factorial(n) // math.prod(math.factorial(int(c)) for c in counts)
        what = f"{distinct} distinct orders of the tested variable over {n} maps"
    if n_perm > distinct:
        warnings.warn(f"n_perm={n_perm} exceeds the {what}: random draws repeat some, and the data support "
                      f"no p-value below 1/{distinct} = {1 / distinct:.3g} (the smallest reported, "
                      f"1/{n_perm + 1}, is smaller). Use n_perm <= {distinct}, or more subjects.",
                      UserWarning, stacklevel=4)


def _inference(Yn, design, original, masker, topology, n_perm, n_jobs, two_sided, random_state, threshold,
               tfce, uncorrected, check_random_state):
    img = masker.inverse_transform
    tfce_orig = topology.tfce(original, two_sided) if tfce else None
    if n_perm <= 0:
        out = {"t": img(original)}
        if tfce:
            out["tfce"] = img(tfce_orig)
        return out
    if n_perm <= n_jobs:
        warnings.warn(f"The specified number of permutations is {n_perm} and the number of jobs to be "
                      f"performed in parallel has set to {n_jobs}. This is incompatible so only {n_perm} "
                      "jobs will be running. You may want to perform more permutations in order to take "
                      "the most of the available computing resources.", UserWarning, stacklevel=3)
    _warn_few_distinct_draws(n_perm, Yn.shape[0], design)
    rng = check_random_state(random_state)
    perms = K.draw_permutations(rng, n_perm, n_jobs, Yn.shape[0], design.intercept_test)
    threshold_t = None if threshold is None else K.t_threshold(
        threshold, two_sided, Yn.shape[0], design.n_covars_raw)
    counts = None
    if tfce or threshold is not None:
        (maxima,) = compute(_spatial_level(Yn, design, perms, topology, two_sided, tfce, threshold_t))
        h0 = maxima[0]
        if uncorrected:
            (counts,) = compute(_voxel_level(Yn, design, perms, original, two_sided, True)[1])
    else:
        h0, counts = compute(*_voxel_level(Yn, design, perms, original, two_sided, uncorrected))
        maxima = None
    logp_max_t = img(K.fwe_log_p(original, h0, two_sided))
    if not tfce and threshold is None and not uncorrected:
        return logp_max_t
    out = {"t": img(original), "logp_max_t": logp_max_t}
    if tfce:
        out["tfce"] = img(tfce_orig)
        out["logp_max_tfce"] = img(K.fwe_log_p(tfce_orig, maxima[1], True))
    if threshold is not None:
        maps = topology.cluster_maps(original, threshold_t, two_sided, maxima[2], maxima[3])
        out["size"] = img(maps["size"])
        out["logp_max_size"] = img(-np.log10(maps["p_size"]))
        out["mass"] = img(maps["mass"])
        out["logp_max_mass"] = img(-np.log10(maps["p_mass"]))
    if uncorrected:
        out["logp_t"] = img(-np.log10((1.0 + counts) / (1.0 + n_perm)))
    return out
