"""Cluster tables of a contrast, computed lazily from a fit or a store.

The z map of a contrast is computed blockwise from the stored parameters (no
refit, no run read), then thresholded and tabulated with
:mod:`daskglm.reporting.thresholding` (nilearn's numerics).
"""

from __future__ import annotations

import os
from typing import Any

import dask
import pandas as pd

from daskglm.first_level.model import open_model
from daskglm.graph.resources import compute as compute_graph
from daskglm.reporting.report import contrast_z_map
from daskglm.reporting.thresholding import check_threshold_params, get_clusters_table, threshold_stats_img

__all__ = ["cluster_table_from_store"]


def cluster_table_from_store(
    store_path: str | os.PathLike,
    contrast_def: Any,
    stat_type: str | None = None,
    alpha: float = 0.001,
    threshold: float | None = 3.09,
    height_control: str | None = "fpr",
    cluster_threshold: int = 0,
    two_sided: bool = False,
    min_distance: float = 8.0,
    compute: bool = True,
):
    """Cluster table of a contrast of a stored fit, computed lazily from the store.

    The store is opened with :func:`daskglm.open_model`; the contrast's z map
    is computed blockwise from the stored parameters (no refit, no run read),
    thresholded with :func:`threshold_stats_img` in the model's mask and
    tabulated with :func:`get_clusters_table`.

    Parameters
    ----------
    store_path : str or path
        A store written by :meth:`daskglm.FirstLevelModel.to_zarr`.
    contrast_def : str, array or list
        The contrast, as for ``compute_contrast``.
    stat_type : {None, 't', 'F'}
    alpha, threshold, height_control, cluster_threshold, two_sided
        As for :func:`threshold_stats_img`.
    min_distance : float, default=8.0
        Minimum distance between sub-peaks, in mm.
    compute : bool, default=True
        If False, return a :class:`dask.delayed.Delayed` of the table.

    Returns
    -------
    pandas.DataFrame or dask.delayed.Delayed
        The table; its ``attrs['threshold']`` holds the z threshold applied.
    """
    check_threshold_params(alpha, threshold, height_control, cluster_threshold)
    path = os.fspath(store_path)
    if "://" not in path and not os.path.exists(path):
        raise FileNotFoundError(f"The store {path!r} does not exist.")
    model = open_model(path)
    z_img = contrast_z_map(model, contrast_def, stat_type)
    table = dask.delayed(_table_from_z, pure=True)(
        z_img, model.mask_img_, alpha, threshold, height_control, cluster_threshold,
        two_sided, min_distance,
    )
    return compute_graph(table)[0] if compute else table


def _table_from_z(z_img, mask_img, alpha, threshold, height_control, cluster_threshold,
                  two_sided, min_distance) -> pd.DataFrame:
    _, z_threshold = threshold_stats_img(
        z_img, mask_img, alpha=alpha, threshold=threshold, height_control=height_control,
        cluster_threshold=cluster_threshold, two_sided=two_sided,
    )
    table = get_clusters_table(
        z_img, float(z_threshold), cluster_threshold=cluster_threshold, two_sided=two_sided,
        min_distance=min_distance,
    )
    table.attrs["threshold"] = float(z_threshold)
    return table
