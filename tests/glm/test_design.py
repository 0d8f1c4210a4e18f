"""Design matrices: loading, building from events, and checks against the runs.

Bad designs (row or column counts, non-finite or non-numeric values, missing
files, wrong types, bad ``t_r``) raise user-facing errors that name the
problem, before any data are read (``raises_fast``, ``no_heavy_work``).
Property-based tests of ``load_design``/``check_design``: valid inputs are
accepted with the right shapes and values; invalid ones raise the documented
user-facing types, never ``IndexError`` or another deep error.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from daskglm import FirstLevelModel
from daskglm.glm.design import DesignError, check_design, load_design
from tests.conftest import N_SCANS, SETTINGS, _model, _user_error, finite, raises_fast


# ----------------------------------------------------------- fit-time checks
def test_design_rows_differ_from_scans(vdata, no_heavy_work):
    with raises_fast(DesignError, "50 rows", f"{N_SCANS} scans"):
        _model(vdata).fit(vdata["func1"], design_matrices=vdata["design1"].iloc[:50])


@pytest.mark.parametrize("n_designs", [1, 3])
def test_design_count_differs_from_run_count(vdata, no_heavy_work, n_designs):
    designs = [vdata["design1"]] * n_designs
    with raises_fast(ValueError, f"{n_designs} design matrices", "2 run(s)"):
        _model(vdata).fit([vdata["func1"], vdata["func2"]], design_matrices=designs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_design(vdata, no_heavy_work, bad):
    design = vdata["design1"].copy()
    column = design.columns[2]
    design.iloc[7, 2] = bad
    with raises_fast(DesignError, "NaN or infinite", "row 7", repr(column)):
        _model(vdata).fit(vdata["func1"], design_matrices=design)


def test_design_with_more_columns_than_scans(vdata, no_heavy_work):
    """nilearn fits n <= p with the pseudo-inverse (z and p NaN; see test_model): accepted, lazily."""
    design = np.random.default_rng(0).standard_normal((N_SCANS, N_SCANS + 5))
    model = _model(vdata).fit(vdata["func1"], design_matrices=design)
    assert model.design_matrices_[0].shape == (N_SCANS, N_SCANS + 5)


def test_non_numeric_design(vdata, no_heavy_work):
    design = vdata["design1"].copy()
    design["label"] = "abc"
    with raises_fast(DesignError, "non-numeric", "abc"):
        _model(vdata).fit(vdata["func1"], design_matrices=design)


def test_missing_design_file(vdata, no_heavy_work):
    path = str(vdata["root"] / "missing_design.npz")
    with raises_fast(FileNotFoundError, path):
        _model(vdata).fit(vdata["func1"], design_matrices=path)


def test_design_of_wrong_type(vdata, no_heavy_work):
    with raises_fast(TypeError, "Design matrix 0", "dict"):
        _model(vdata).fit(vdata["func1"], design_matrices={"a": 1})


def test_missing_events_file(vdata, no_heavy_work):
    path = str(vdata["root"] / "missing_events.tsv")
    with raises_fast(FileNotFoundError, path):
        FirstLevelModel(t_r=2.5, mask_img=vdata["mask"]).fit(vdata["func1"], events=path)


def test_negative_t_r(vdata, no_heavy_work):
    with raises_fast(ValueError, "t_r", "-2"):
        FirstLevelModel(t_r=-2, mask_img=vdata["mask"]).fit(vdata["func1"], events=vdata["events1"])


# ---------------------------------------------------------------- properties
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
def test_check_design_keeps_duplicated_names_and_rejects_non_numeric_columns(X, data):
    # nilearn accepts duplicated / empty names (its surface fixture uses ["", "", ""])
    for names in (["a"] * X.shape[1], [""] * X.shape[1]):
        kept = check_design(pd.DataFrame(X, columns=names), 0)
        assert list(kept.columns) == names
        np.testing.assert_array_equal(kept.to_numpy(), X)
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


@pytest.mark.parametrize("masking", [{"mask_img": None}, {"target_affine": np.diag([4.0, 4.0, 4.0])}])
def test_a_bad_design_fails_before_any_data_is_read(vdata, no_heavy_work, masking):
    """nilearn's EPI mask and the resampling range pass read the runs: a bad events table must fail first."""
    events = pd.DataFrame({"onset": [0.0, 10.0], "trial_type": ["a", "b"]})  # no duration column
    model = FirstLevelModel(t_r=2.0, **masking)
    with pytest.raises(ValueError, match="duration"):
        model.fit(vdata["func1"], events=events)
