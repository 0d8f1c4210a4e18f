"""Thresholding of statistical maps and cluster tables.

Height control (``'fpr'``, ``'fdr'``, ``'bonferroni'`` or none) with a
cluster-extent threshold, and peak/cluster tables.

Both work on *exported* 3D maps and reuse nilearn's own implementations,
:func:`nilearn.glm.threshold_stats_img` and
:func:`nilearn.reporting.get_clusters_table`, so the thresholds and tables are
nilearn's.  That fits because a single 3D map is small (one float per voxel of
the grid) even when the runs it comes from are not: the out-of-core part is the
fit, not the map.

This module takes images and returns images or tables; cluster tables of a
fit that only exists in a store are :mod:`daskglm.reporting.tables`'.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd

from daskglm.errors import ThresholdError

__all__ = [
    "CLUSTER_COLUMNS",
    "HEIGHT_CONTROLS",
    "ThresholdError",
    "threshold_stats_img",
    "get_clusters_table",
    "check_threshold_params",
]

#: Columns of a cluster table (nilearn's).
CLUSTER_COLUMNS = ["Cluster ID", "X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"]

#: Accepted values of ``height_control``.
HEIGHT_CONTROLS = ("fpr", "fdr", "bonferroni", None)



def check_threshold_params(alpha: float, threshold: float | None, height_control: str | None,
                  cluster_threshold: int) -> None:
    if height_control not in HEIGHT_CONTROLS:
        raise ThresholdError(
            f"Unknown height_control {height_control!r}; choose one of {list(HEIGHT_CONTROLS)}."
        )
    if height_control is not None and not (isinstance(alpha, (int, float)) and 0 < alpha <= 1):
        raise ThresholdError(f"alpha must be a number in (0, 1], got {alpha!r}.")
    if height_control is None and threshold is None:
        raise ThresholdError("height_control=None needs an explicit threshold (a z value).")
    if threshold is not None and not isinstance(threshold, (int, float, np.number)):
        raise ThresholdError(f"threshold must be a number, got {threshold!r}.")
    if not isinstance(cluster_threshold, (int, np.integer)) or cluster_threshold < 0:
        raise ThresholdError(
            f"cluster_threshold must be a non-negative number of voxels, got {cluster_threshold!r}."
        )


def _load_3d(img, what: str) -> nib.Nifti1Image:
    from daskglm.io.nifti import load_image

    img = load_image(img, what)
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine, img.header)
    if len(img.shape) != 3:
        raise ThresholdError(f"The {what} must be a 3D image, got shape {img.shape}.")
    return img


def threshold_stats_img(
    stat_img,
    mask_img=None,
    alpha: float = 0.001,
    threshold: float | None = 3.0,
    height_control: str | None = "fpr",
    cluster_threshold: int = 0,
    two_sided: bool = True,
) -> tuple[nib.Nifti1Image, float]:
    """Threshold a z map with height control and a cluster-extent threshold.

    A thin, validating wrapper over :func:`nilearn.glm.threshold_stats_img`
    (same semantics, same result).

    Parameters
    ----------
    stat_img : path or Nifti1Image
        A 3D z map, e.g. from :meth:`daskglm.FirstLevelModel.compute_contrast`.
    mask_img : path, Nifti1Image or None
        Voxels to consider (e.g. ``model.mask_img_``); ``None`` uses the
        non-zero voxels of ``stat_img``.
    alpha : float, default=0.001
        Error rate for ``'fpr'``, ``'fdr'`` and ``'bonferroni'``.
    threshold : float or None, default=3.0
        The z threshold when ``height_control`` is None (ignored otherwise).
    height_control : {'fpr', 'fdr', 'bonferroni', None}, default='fpr'
        False-positive rate (uncorrected), false discovery rate, family-wise
        (Bonferroni), or a fixed ``threshold``.
    cluster_threshold : int, default=0
        Remove clusters smaller than this many voxels.
    two_sided : bool, default=True
        Threshold both tails (use False for F-derived z maps).

    Returns
    -------
    thresholded_map : Nifti1Image
        ``stat_img`` with sub-threshold voxels set to zero.
    threshold : float
        The z threshold applied.

    Raises
    ------
    ThresholdError
        For invalid parameters (a ``ValueError``).
    """
    from nilearn.glm import threshold_stats_img as _nilearn_threshold

    check_threshold_params(alpha, threshold, height_control, cluster_threshold)
    stat_img = _load_3d(stat_img, "statistical map")
    if mask_img is not None:
        mask_img = _load_3d(mask_img, "mask")
    if height_control is not None:
        threshold = None  # nilearn warns when both are given; the height control decides
    with warnings.catch_warnings():
        # nilearn 0.14 announces a future change of the default threshold; ours is explicit
        warnings.filterwarnings("ignore", message=r"(?s).*default 'threshold' will be", category=FutureWarning)
        return _nilearn_threshold(
            stat_img, mask_img=mask_img, alpha=alpha, threshold=threshold,
            height_control=height_control, cluster_threshold=int(cluster_threshold),
            two_sided=two_sided,
        )


def get_clusters_table(
    stat_img,
    stat_threshold: float,
    cluster_threshold: int = 0,
    two_sided: bool = False,
    min_distance: float = 8.0,
) -> pd.DataFrame:
    """Peaks and clusters of a 3D statistical map, as nilearn's table.

    Delegates to :func:`nilearn.reporting.get_clusters_table`: columns
    ``Cluster ID``, ``X``, ``Y``, ``Z`` (mm), ``Peak Stat`` and
    ``Cluster Size (mm3)``; sub-peaks get IDs like ``1a``.

    Parameters
    ----------
    stat_img : path or Nifti1Image
        3D statistical map.
    stat_threshold : float
        Height threshold (absolute value when ``two_sided``).
    cluster_threshold : int, default=0
        Minimum cluster size in voxels.
    two_sided : bool, default=False
        Report negative clusters too.
    min_distance : float, default=8.0
        Minimum distance between sub-peaks, in mm.

    Returns
    -------
    pandas.DataFrame
    """
    from nilearn.reporting import get_clusters_table as _nilearn_table

    if not isinstance(stat_threshold, (int, float, np.number)) or np.isnan(stat_threshold):
        raise ThresholdError(f"stat_threshold must be a number, got {stat_threshold!r}.")
    check_threshold_params(0.001, float(stat_threshold), None, cluster_threshold)
    stat_img = _load_3d(stat_img, "statistical map")
    if np.isinf(stat_threshold):  # e.g. an FDR threshold that no voxel passes
        return pd.DataFrame(columns=CLUSTER_COLUMNS)
    return _nilearn_table(
        stat_img, stat_threshold=float(stat_threshold), cluster_threshold=int(cluster_threshold),
        two_sided=two_sided, min_distance=min_distance,
    )
