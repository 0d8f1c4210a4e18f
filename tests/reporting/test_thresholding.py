"""Height control, cluster extent and cluster tables (nilearn's, on exported maps).

Cluster tables computed from stores are in test_report.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from scipy import stats

from daskglm.reporting.thresholding import ThresholdError, get_clusters_table, threshold_stats_img


@pytest.fixture(scope="module")
def z_img():
    """Noise plus one big blob (positive) and one single-voxel spike."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((20, 20, 20)) * 0.5
    z[4:9, 4:9, 4:9] = 6.0
    z[15, 15, 15] = 8.0
    return nib.Nifti1Image(z, np.diag([2.0, 2.0, 2.0, 1.0]))


@pytest.mark.parametrize("height_control, expected", [
    ("fpr", stats.norm.isf(0.001)),
    ("bonferroni", stats.norm.isf(0.001 / 8000)),
    (None, 2.5),
])
def test_threshold_values(z_img, height_control, expected):
    _, threshold = threshold_stats_img(z_img, alpha=0.001, threshold=2.5,
                                       height_control=height_control, two_sided=False)
    assert threshold == pytest.approx(expected, rel=1e-6)


def test_fdr_keeps_the_signal_and_drops_the_noise(z_img):
    kept, fdr = threshold_stats_img(z_img, alpha=0.05, height_control="fdr", two_sided=False)
    # Benjamini-Hochberg: the threshold is the smallest z among the 126 signal voxels
    assert stats.norm.isf(0.05) < fdr <= 6.0
    assert np.count_nonzero(np.asarray(kept.dataobj)) == 126


def test_cluster_threshold_removes_small_clusters(z_img):
    kept, _ = threshold_stats_img(z_img, height_control="fpr", cluster_threshold=10, two_sided=False)
    data = np.asarray(kept.dataobj)
    assert data[15, 15, 15] == 0  # the isolated spike is gone
    assert np.all(data[4:9, 4:9, 4:9] == 6.0)  # the blob stays
    assert np.count_nonzero(data) == 125


def test_mask_restricts_bonferroni(z_img):
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[:10, :10, :10] = 1
    _, threshold = threshold_stats_img(z_img, nib.Nifti1Image(mask, z_img.affine), alpha=0.001,
                                       height_control="bonferroni", two_sided=False)
    assert threshold == pytest.approx(stats.norm.isf(0.001 / 1000))


def test_threshold_warns_nothing(z_img):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        threshold_stats_img(z_img, threshold=3.0, height_control="fdr")


def test_clusters_table(z_img):
    table = get_clusters_table(z_img, 3.0, cluster_threshold=0)
    assert list(table.columns) == ["Cluster ID", "X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"]
    main = table[table["Cluster ID"].astype(str).str.isdigit()]
    assert len(main) == 2
    assert main["Peak Stat"].max() == pytest.approx(8.0)
    assert sorted(main["Cluster Size (mm3)"]) == [8, 1000]  # voxels of 2 mm: 1 and 125


def test_clusters_table_infinite_threshold_is_empty(z_img):
    assert get_clusters_table(z_img, np.inf).empty


@pytest.mark.parametrize("kwargs, message", [
    ({"height_control": "holm"}, "height_control"),
    ({"alpha": 0}, "alpha"),
    ({"alpha": 1.5}, "alpha"),
    ({"height_control": None, "threshold": None}, "threshold"),
    ({"cluster_threshold": -1}, "cluster_threshold"),
])
def test_bad_parameters(z_img, kwargs, message):
    with pytest.raises(ThresholdError, match=message):
        threshold_stats_img(z_img, **kwargs)
    assert issubclass(ThresholdError, ValueError)


def test_4d_map_rejected(z_img):
    img4d = nib.Nifti1Image(np.zeros((3, 3, 3, 2)), np.eye(4))
    with pytest.raises(ThresholdError, match="3D"):
        threshold_stats_img(img4d)
