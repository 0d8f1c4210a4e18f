"""Designs with duplicated or empty column names, accepted as nilearn 0.14.1 accepts them.

nilearn's own surface fixture uses the design columns ``["", "", ""]``.  Here
a design with the names ``["a", "a", "", "constant"]`` is fitted by daskglm
and by nilearn: vector and matrix contrasts agree; a contrast expression that
names a duplicated column is refused as ambiguous (nilearn silently takes the
first such column); ``results_`` builds (positional ``regressor`` with a
``regressor_name`` coordinate); the store keeps the names and still checks
their count.
"""

from __future__ import annotations

import json
import shutil
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import FirstLevelModel as NilearnFLM

from daskglm import FirstLevelModel, open_model
from daskglm.errors import ContrastError
from daskglm.glm.contrasts import expression_to_contrast_vector
from daskglm.store.zarr import StoreError

NAMES = ["a", "a", "", "constant"]


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(7)
    n = 40
    X = pd.DataFrame(np.c_[rng.normal(size=(n, 3)), np.ones(n)], columns=NAMES)
    bold = 100 + X.to_numpy() @ rng.normal(size=(4, 30)) + rng.normal(size=(n, 30))
    img = nib.Nifti1Image(bold.T.reshape(5, 3, 2, n), np.diag([3.0, 3.0, 3.0, 1.0]))
    return {"img": img, "X": X}


@pytest.fixture(scope="module")
def fits(data) -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = FirstLevelModel(mask_img=False).fit(data["img"], design_matrices=data["X"])
        ref = NilearnFLM(mask_img=False).fit(data["img"], design_matrices=data["X"])
    return ours, ref


def test_expression_naming_a_duplicated_column_is_ambiguous():
    for expression in ("a", "a - constant", "2 * a", "`a` + constant"):
        with pytest.raises(ContrastError, match="ambiguous"):
            expression_to_contrast_vector(expression, NAMES)
    with pytest.raises(ContrastError, match="ambiguous"):
        expression_to_contrast_vector("", ["", "", "x"])
    with pytest.raises(ContrastError, match="ambiguous"):
        expression_to_contrast_vector("x - ``", ["", "", "x"])
    np.testing.assert_array_equal(expression_to_contrast_vector("``", NAMES), [0, 0, 1, 0])
    np.testing.assert_array_equal(expression_to_contrast_vector("constant", NAMES), [0, 0, 0, 1])
    np.testing.assert_array_equal(expression_to_contrast_vector("x - 2 * y", ["", "", "x", "y"]),
                                  [0, 0, 1, -2])


@pytest.mark.parametrize("contrast", [np.array([1.0, -1.0, 0, 0]), np.array([0, 0, 1.0, 0]), np.eye(4)[:3]])
def test_vector_and_matrix_contrasts_match_nilearn(fits, contrast):
    ours, ref = fits
    for output in ("z_score", "effect_size"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = ours.compute_contrast(contrast, output_type=output).get_fdata()
            b = ref.compute_contrast(contrast, output_type=output).get_fdata()
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_expression_contrast_on_duplicated_names(fits):
    ours, ref = fits
    with pytest.raises(ContrastError, match="ambiguous"):
        ours.compute_contrast("a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = ours.compute_contrast("constant", output_type="effect_size").get_fdata()
        b = ref.compute_contrast("constant", output_type="effect_size").get_fdata()
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_results_dataset_with_duplicated_names(fits):
    ours, _ = fits
    ds = ours.results_
    assert list(ds["regressor_name"].values[0]) == NAMES
    assert ds.sizes["regressor"] == 4
    assert list(ours.design_matrices_[0].columns) == NAMES


def test_store_keeps_duplicated_names_and_checks_their_count(fits, data, tmp_path):
    ours, _ = fits
    path = tmp_path / "dup.zarr"
    ours.to_zarr(path)
    back = open_model(path)
    assert list(back.design_matrices_[0].columns) == NAMES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(back.compute_contrast([1, -1, 0, 0]).get_fdata(),
                                   ours.compute_contrast([1, -1, 0, 0]).get_fdata(), rtol=1e-10)
    bad = tmp_path / "short.zarr"
    shutil.copytree(path, bad)
    meta = json.loads((bad / "zarr.json").read_text())
    meta["attributes"]["design_columns"] = json.dumps([["a", "a", ""]])
    (bad / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="3 column names"):
        open_model(bad)
