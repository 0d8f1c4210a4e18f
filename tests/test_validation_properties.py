"""Property-based tests of the contrast and design validators.

Valid inputs are accepted with the right shapes and values; invalid ones raise
the documented user-facing types - never ``IndexError`` or another deep error.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from daskglm.contrasts import (
    ContrastError,
    as_contrast_matrix,
    contrast_kind,
    expression_to_contrast_vector,
    pad_contrast,
)
from daskglm.design import DesignError, check_design, load_design

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
USER_ERRORS = (ValueError, TypeError, FileNotFoundError)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in {"and", "or", "not", "in", "is", "if", "else", "True", "False", "None",
                        "lambda", "for", "def", "del", "as", "from", "with", "while", "import"}
)
column_lists = st.lists(names, min_size=1, max_size=8, unique=True)


def _user_error(fn, *args, allowed=USER_ERRORS):
    """Call ``fn``; return the exception, which must be user-facing (or None)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*args)
    except allowed as err:
        assert not isinstance(err, (IndexError, KeyError))
        assert str(err), "error without a message"
        return err
    return None


# --------------------------------------------------------------- contrasts
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


# ------------------------------------------------------------------ designs
designs = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 30), st.integers(1, 6)),
    elements=finite,
)


@SETTINGS
@given(designs)
def test_load_design_accepts_finite_arrays(X):
    df = load_design(X, 0)
    assert isinstance(df, pd.DataFrame) and df.shape == X.shape
    assert (df.dtypes == np.float64).all()
    np.testing.assert_array_equal(df.to_numpy(), X)
    named = pd.DataFrame(X, columns=[f"r{i}" for i in range(X.shape[1])])
    checked = check_design(named, 3)
    assert list(checked.columns) == list(named.columns)


@SETTINGS
@given(designs, st.sampled_from([np.nan, np.inf, -np.inf]), st.data())
def test_check_design_rejects_non_finite(X, bad, data):
    X = X.copy()
    row = data.draw(st.integers(0, X.shape[0] - 1))
    col = data.draw(st.integers(0, X.shape[1] - 1))
    X[row, col] = bad
    with pytest.raises(DesignError) as info:
        load_design(X, 4)
    message = str(info.value)
    assert "Design matrix 4" in message and "NaN or infinite" in message
    first = np.argwhere(~np.isfinite(X))[0]
    assert f"row {first[0]}" in message


@SETTINGS
@given(
    st.one_of(
        hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=1, max_side=5), elements=finite),
        hnp.arrays(np.float64, hnp.array_shapes(min_dims=3, max_dims=3, max_side=3), elements=finite),
        hnp.arrays(np.float64, st.sampled_from([(0, 3), (4, 0), (0, 0)])),
    )
)
def test_load_design_rejects_bad_shapes(X):
    with pytest.raises(DesignError):
        load_design(X, 1)


@SETTINGS
@given(st.one_of(st.none(), st.integers(), st.floats(), st.dictionaries(st.text(max_size=2), st.integers()),
                 st.just(object())))
def test_load_design_rejects_wrong_types(obj):
    with pytest.raises(TypeError, match="Design matrix 2"):
        load_design(obj, 2)


@SETTINGS
@given(designs)
def test_check_design_rejects_non_dataframes(X):
    with pytest.raises(TypeError, match="DataFrame"):
        check_design(X, 0)


@SETTINGS
@given(designs, st.data())
def test_check_design_rejects_duplicated_or_non_numeric_columns(X, data):
    if X.shape[1] >= 2:
        dup = pd.DataFrame(X, columns=["a"] * X.shape[1])
        with pytest.raises(DesignError, match="duplicated"):
            check_design(dup, 0)
    text = pd.DataFrame(X).astype(object)
    text.iloc[data.draw(st.integers(0, X.shape[0] - 1)), 0] = "oops"
    with pytest.raises(DesignError, match="non-numeric"):
        check_design(text, 0)


@settings(max_examples=15, deadline=None)
@given(designs, st.sampled_from([".csv", ".tsv", ".npz", ".npy"]))
def test_load_design_files_round_trip(X, suffix):
    columns = [f"reg{i}" for i in range(X.shape[1])]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"design{suffix}"
        if suffix == ".csv":
            pd.DataFrame(X, columns=columns).to_csv(path, index=False, float_format="%.17g")
        elif suffix == ".tsv":
            pd.DataFrame(X, columns=columns).to_csv(path, sep="\t", index=False, float_format="%.17g")
        elif suffix == ".npz":
            np.savez(path, X=X)
        else:
            np.save(path, X)
        df = load_design(path, 0)
    assert df.shape == X.shape
    np.testing.assert_allclose(df.to_numpy(), X, rtol=1e-15)
    if suffix in (".csv", ".tsv"):
        assert list(df.columns) == columns


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from([".csv", ".tsv", ".npz", ".npy", ".txt", ".xlsx"]))
def test_load_design_garbage_files_raise_user_errors(payload, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"design{suffix}"
        path.write_bytes(payload)
        err = _user_error(load_design, path, 0)
    # garbage may happen to parse as a (tiny) valid table; otherwise it must be a DesignError
    assert err is None or isinstance(err, DesignError)


def test_load_design_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_design(path, 0)
