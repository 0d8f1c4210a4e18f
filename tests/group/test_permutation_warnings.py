"""``non_parametric_inference`` says when more permutations are asked than the design has distinct ones."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm.group.permutation import non_parametric_inference


@pytest.fixture(scope="module")
def six_maps():
    rng = np.random.default_rng(1)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    mask = np.zeros((6, 7, 5), np.uint8)
    mask[1:5, 1:6, 1:4] = 1
    maps = [nib.Nifti1Image(rng.standard_normal(mask.shape).astype("f4"), affine) for _ in range(6)]
    return maps, nib.Nifti1Image(mask, affine)


def _warnings(maps, mask, design, n_perm, contrast="intercept") -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        non_parametric_inference(maps, design_matrix=design, second_level_contrast=contrast, mask=mask,
                                 n_perm=n_perm, random_state=0)
    return [str(w.message) for w in caught]


def test_sign_flips_beyond_the_2_to_the_n_distinct_ones_warn(six_maps):
    maps, mask = six_maps
    design = pd.DataFrame({"intercept": np.ones(6)})
    (message,) = [m for m in _warnings(maps, mask, design, 100) if "distinct" in m]
    assert "n_perm=100 exceeds the 2**6 = 64 distinct sign flips of 6 maps" in message
    assert "1/64 = 0.0156" in message and "n_perm <= 64" in message
    assert not [m for m in _warnings(maps, mask, design, 64) if "distinct" in m]


def test_permutations_beyond_the_distinct_orders_of_two_groups_warn(six_maps):
    maps, mask = six_maps
    design = pd.DataFrame({"group": [1.0, 1, 1, 0, 0, 0]})  # the intercept is modelled: rows permuted
    # 6! / (3! 3!) = 20 distinct assignments of the labels
    (message,) = [m for m in _warnings(maps, mask, design, 30, "group") if "distinct" in m]
    assert "n_perm=30 exceeds the 20 distinct orders of the tested variable over 6 maps" in message
    assert not [m for m in _warnings(maps, mask, design, 20, "group") if "distinct" in m]


def test_stacking_subjects_plans_no_p2p_shuffle():
    """On a dask.distributed cluster a p2p rechunk logs 'Shuffle ... initialized / deactivated' WARNING lines
    for every group contrast; the subjects' rows are stacked with task rechunking, whatever dask's default."""
    import dask
    import dask.array as da

    from daskglm.group.graph import stack_rows

    rows = [da.ones(50_000, chunks=10_000) for _ in range(100)]
    with dask.config.set({"array.rechunk.method": "p2p"}):
        names = list(stack_rows(rows).dask.layers)
        assert any("p2p" in name for name in da.stack(rows).rechunk((100, 41_943)).dask.layers)  # the control
    assert not [name for name in names if "p2p" in name]
