"""nilearn's automatic EPI mask (``mask_img=None``), from streamed run means.

nilearn's ``FirstLevelModel`` fits a ``MultiNiftiMasker(mask_strategy='epi')``
on the runs: ``compute_epi_mask`` on each run's mean image, then
``intersect_masks(threshold=0.5, connected=True)``.  We stream each run once
to get its mean image (a dask reduction over time chunks) and hand the means to
nilearn's own ``compute_multi_epi_mask``, so the thresholds are nilearn's.
"""

from __future__ import annotations

import dask
import nibabel as nib
import numpy as np
from dask import delayed

from .io.nifti import RunSource

__all__ = ["run_mean_image", "compute_epi_mask_from_runs"]


def _mean_of_run(source: RunSource, chunk: int) -> np.ndarray:
    total = np.zeros(source.spatial_shape[::-1])
    for _, volumes in source.iter_chunks(chunk):
        vols = np.asarray(volumes, dtype=np.float64)
        vols[~np.isfinite(vols)] = 0
        total += vols.sum(axis=0)
    return (total / source.n_scans).transpose(2, 1, 0)


def run_mean_image(source: RunSource, chunk: int = 16):
    """Delayed mean image (x, y, z) of a run, streamed."""
    return delayed(_mean_of_run, pure=True)(source, chunk)


def compute_epi_mask_from_runs(sources: list[RunSource]) -> np.ndarray:
    """Boolean mask as nilearn's ``FirstLevelModel(mask_img=None)`` computes it.

    This is the one eager step of ``fit``: the mask sets the voxel count that
    every later array depends on.
    """
    from nilearn.masking import compute_multi_epi_mask

    means = dask.compute(*[run_mean_image(s) for s in sources])
    imgs = [nib.Nifti1Image(m.astype(np.float32), s.affine) for m, s in zip(means, sources)]
    mask_img = compute_multi_epi_mask(imgs)
    return np.asarray(mask_img.dataobj) != 0
