"""Contrast definitions: arrays, expressions, per-run lists, output and stat types.

Bad contrasts given to a fitted model raise ``ContrastError`` (a ``ValueError``)
naming the problem (``raises_fast``).  Property-based tests of the parsers
(``as_contrast_matrix``, ``pad_contrast``, ``contrast_kind``,
``expression_to_contrast_vector``): valid inputs give the right shapes and
values; invalid ones raise ``ContrastError``, never ``IndexError`` or another
deep error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from daskglm.glm.contrasts import (
    ContrastError,
    as_contrast_matrix,
    contrast_kind,
    expression_to_contrast_vector,
    pad_contrast,
)
from tests.conftest import SETTINGS, _user_error, finite, raises_fast


# -------------------------------------------------------------- fitted model
def test_unknown_output_type(fitted):
    with raises_fast(ValueError, "output_type", "'zscore'", "z_score"):
        fitted.compute_contrast([1.0], output_type="zscore")


def test_contrast_longer_than_design(fitted):
    p = fitted.design_matrices_[0].shape[1]
    with raises_fast(ContrastError, f"P={p}", f"length {p + 4}"):
        fitted.compute_contrast(np.ones(p + 4))


def test_f_contrast_wider_than_design(fitted):
    p = fitted.design_matrices_[0].shape[1]
    with raises_fast(ContrastError, f"P={p}", f"{p + 1}"):
        fitted.compute_contrast(np.ones((2, p + 1)))


@pytest.mark.parametrize("contrast", [[0.0, 0.0, 0.0], np.zeros((2, 3))])
def test_all_zero_contrast(fitted, contrast):
    with raises_fast(ContrastError, "null contrast", "zero"):
        fitted.compute_contrast(contrast)


def test_expression_with_unknown_column(fitted):
    with raises_fast(ContrastError, "not valid", "Unknown names: ['bogus']", "SSt-SSp"):
        fitted.compute_contrast("constant - bogus")


def test_non_finite_contrast(fitted):
    with raises_fast(ContrastError, "NaN or infinite"):
        fitted.compute_contrast([1.0, np.nan])


def test_contrast_of_wrong_dimension(fitted):
    with raises_fast(ContrastError, "1-D or 2-D", "(2, 2, 3)"):
        fitted.compute_contrast(np.ones((2, 2, 3)))


def test_unknown_stat_type(fitted):
    with raises_fast(ContrastError, "stat_type", "'chi2'"):
        fitted.compute_contrast([1.0], stat_type="chi2")


def test_too_many_per_run_contrasts(fitted):
    with raises_fast(ContrastError, "3 contrasts", "1 runs"):
        fitted.compute_contrast(["constant"] * 3)


# ---------------------------------------------------------------- properties
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in {"and", "or", "not", "in", "is", "if", "else", "True", "False", "None",
                        "lambda", "for", "def", "del", "as", "from", "with", "while", "import"}
)
column_lists = st.lists(names, min_size=1, max_size=8, unique=True)


@SETTINGS
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=8), elements=finite))
def test_as_contrast_matrix_accepts_finite_arrays(arr):
    out = as_contrast_matrix(arr, [f"c{i}" for i in range(8)])
    assert out.dtype == np.float64
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    # lists are accepted the same way
    np.testing.assert_array_equal(as_contrast_matrix(arr.tolist(), []), arr)


@SETTINGS
@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6), elements=finite),
    st.sampled_from([np.nan, np.inf, -np.inf]),
    st.data(),
)
def test_as_contrast_matrix_rejects_non_finite(arr, bad, data):
    flat = arr.ravel().copy()
    flat[data.draw(st.integers(0, flat.size - 1))] = bad
    with pytest.raises(ContrastError, match="NaN or infinite"):
        as_contrast_matrix(flat.reshape(arr.shape), ["a"])


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.lists(st.text(max_size=3), min_size=1, max_size=3),
    st.lists(st.lists(finite, max_size=3), min_size=2, max_size=3),  # possibly ragged
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=3, max_dims=4, max_side=3), elements=finite),
    hnp.arrays(np.float64, st.sampled_from([(0,), (0, 3), (3, 0)])),
    st.just(np.float64(1.0)),
    st.just(object()),
    st.just(1j),
)


@SETTINGS
@given(junk)
def test_as_contrast_matrix_rejects_junk_cleanly(value):
    err = _user_error(as_contrast_matrix, value, ["a", "b", "c"])
    if err is None:  # accepted: must then be a valid 1-D/2-D finite float contrast
        out = as_contrast_matrix(value, ["a", "b", "c"])
        assert out.ndim in (1, 2) and out.size > 0 and np.isfinite(out).all()
    else:
        assert isinstance(err, ContrastError)


@SETTINGS
@given(st.integers(1, 10), st.integers(1, 10), st.integers(1, 4), st.booleans())
def test_pad_contrast_shapes(n_cols, n_regressors, n_rows, two_d):
    con = np.arange(1, n_rows * n_cols + 1, dtype=float).reshape(n_rows, n_cols)
    if not two_d:
        con = con[0]
    stat = "F" if two_d else "t"
    if n_cols > n_regressors:
        with pytest.raises(ContrastError) as info:
            pad_contrast(con, n_regressors, stat)
        assert f"P={n_regressors}" in str(info.value) and str(n_cols) in str(info.value)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = pad_contrast(con, n_regressors, stat)
    assert out.shape == (*con.shape[:-1], n_regressors)
    np.testing.assert_array_equal(out[..., :n_cols], con)
    assert not out[..., n_cols:].any()
    padded_warning = any("padded with zeros" in str(w.message) for w in caught)
    assert padded_warning == (n_cols < n_regressors)


@SETTINGS
@given(junk, st.integers(-2, 6), st.sampled_from(["t", "F", "x", None]))
def test_pad_contrast_never_index_error(con, n_regressors, stat_type):
    err = _user_error(pad_contrast, con, n_regressors, stat_type)
    assert err is None or isinstance(err, (ContrastError, ValueError))


@SETTINGS
@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6), elements=finite),
    st.sampled_from([None, "t", "F"]),
)
def test_contrast_kind(con, stat_type):
    kind, dim = contrast_kind(con, stat_type)
    rows = con.shape[0] if con.ndim == 2 else 1
    assert dim == rows
    if stat_type == "F" or rows > 1:
        assert kind == "F"
    else:
        assert kind == "t"


@SETTINGS
@given(st.one_of(st.text(max_size=4).filter(lambda s: s not in ("t", "F")), st.integers()))
def test_contrast_kind_rejects_unknown_stat_type(stat_type):
    with pytest.raises(ContrastError, match="stat_type"):
        contrast_kind(np.ones(3), stat_type)


@SETTINGS
@given(junk)
def test_contrast_kind_never_index_error(con):
    err = _user_error(contrast_kind, con, None)
    assert err is None or isinstance(err, ContrastError)


@SETTINGS
@given(column_lists, st.data())
def test_expression_linear_combination(columns, data):
    weights = data.draw(st.lists(st.integers(-5, 5), min_size=len(columns), max_size=len(columns)))
    terms = [f"{w} * {c}" for w, c in zip(weights, columns)]
    vec = expression_to_contrast_vector(" + ".join(terms), columns)
    assert vec.shape == (len(columns),)
    np.testing.assert_allclose(vec, weights)
    # a bare column name selects that column
    pick = data.draw(st.sampled_from(columns))
    np.testing.assert_array_equal(
        expression_to_contrast_vector(pick, columns), (np.asarray(columns) == pick).astype(float)
    )


@SETTINGS
@given(column_lists, names)
def test_expression_unknown_column_is_named(columns, unknown):
    if unknown in columns:
        return
    expression = f"{columns[0]} - {unknown}"
    with pytest.raises(ContrastError) as info:
        expression_to_contrast_vector(expression, columns)
    message = str(info.value)
    assert repr(unknown) in message and expression in message
    assert all(c in message for c in columns)  # the available columns are listed


@SETTINGS
@given(column_lists, st.text(alphabet="abcxyz_019 +-()./<>=,", max_size=12))
def test_expression_garbage_raises_contrast_error_only(columns, expression):
    err = _user_error(expression_to_contrast_vector, expression, columns)
    if err is None:
        vec = expression_to_contrast_vector(expression, columns)
        assert vec.shape == (len(columns),) and np.isfinite(vec).all()
    else:
        assert isinstance(err, ContrastError)


def test_an_expression_for_all_runs_is_quiet():
    """One expression for several runs is resolved by name in each: nilearn's advice to pass one is not given."""
    from daskglm.glm.contrasts import per_run_contrasts

    columns = [["a", "b", "constant"], ["b", "a", "new", "constant"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cons = per_run_contrasts("a - b", columns)
    np.testing.assert_array_equal(cons[0], [1, -1, 0])
    np.testing.assert_array_equal(cons[1], [-1, 1, 0, 0])
    with pytest.warns(RuntimeWarning, match="you should pass contrast as an expression"):
        per_run_contrasts(np.array([1.0, -1.0, 0.0]), [columns[0], columns[0]])
