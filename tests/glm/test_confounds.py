"""Confounds files: one reader (``daskglm.glm.confounds``) for the Python API and the command line.

Real files written in ``tmp_path``: fMRIPrep-style TSV/CSV with a header,
SPM ``rp_*.txt``, FSL ``.par``, AFNI ``.1D``; a fit given a file has the design
of the fit given the same numbers as a DataFrame, and nilearn's design and maps
for that DataFrame; refusals name the file.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm import FirstLevelModel
from daskglm.errors import ConfoundsError, DesignError
from daskglm.glm.confounds import MOTION_NAMES, confounds_columns, read_confounds

MOTION = [f"motion_{i}" for i in range(6)]


@pytest.mark.parametrize("name, text, columns", [
    ("rp_sub.txt", "0.1 0.2 0.3 0.01 0.02 0.03\n0.2 0.1 0.0 0.0 0.01 0.02\n", MOTION),
    ("prefiltered_func_data_mcf.par", "0 0 0 0.1 0.2 0.3\n0 0 0 0.1 0.2 0.4\n", MOTION),
    ("outliers.1D", "# AFNI\n1 0 0\n0 1 0\n", ["col_0", "col_1", "col_2"]),
    ("motion.dat", "1 0\n0 1\n", ["col_0", "col_1"]),
    ("conf.tsv", "csf\twm\n1.0\t2.0\n1.5\t2.5\n", ["csf", "wm"]),
    ("conf.csv", "csf,wm\n1.0,2.0\n1.5,2.5\n", ["csf", "wm"]),
    ("conf.txt", "csf\twm\n1.0\t2.0\n1.5\t2.5\n", ["csf", "wm"]),  # a header: read as TSV
])
def test_read_confounds_formats(tmp_path, name, text, columns):
    path = tmp_path / name
    path.write_text(text)
    for source in (str(path), path):
        table = read_confounds(source)
        assert list(table.columns) == columns and table.shape == (2, len(columns))
        assert table.dtypes.map(lambda d: d.kind == "f").all()
    assert tuple(MOTION) == MOTION_NAMES


@pytest.mark.parametrize("text, match", [
    ("0.1 0.2 abc\n0.1 0.2 0.3\n", "non-numeric|Could not read"),
    ("csf\twm\nn/a\t2.0\n1.5\t2.5\n", "missing values"),
    ("a b\n", "no data"),
    ("1 2 3\n4 5\n", "Could not read"),
])
def test_read_confounds_errors_name_the_file(tmp_path, text, match):
    path = tmp_path / "rp_bad.txt"
    path.write_text(text)
    with pytest.raises(ConfoundsError, match=match) as info:
        read_confounds(str(path))
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="rp_none.txt"):
        read_confounds(tmp_path / "rp_none.txt")


def test_fmriprep_n_a_is_refused_with_nilearns_words_and_the_file(tmp_path):
    """fMRIPrep's ``n/a`` in first rows: nilearn's message (the Python API's before), the file (the CLI's)."""
    path = tmp_path / "sub-01_task-x_desc-confounds_timeseries.tsv"
    pd.DataFrame({"csf": [1.0, 2.0, 3.0], "framewise_displacement": [np.nan, 0.1, 0.2]}).to_csv(
        path, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(ValueError, match="Extra regressors contain NaN values") as info:
        read_confounds(path)
    assert isinstance(info.value, ConfoundsError)
    assert str(path) in str(info.value) and "framewise_displacement" in str(info.value)
    assert "csf" not in str(info.value).split("in: ")[1]


def test_columns_of_tables_arrays_and_files(tmp_path):
    values = np.arange(12.0).reshape(6, 2)
    matrix, names = confounds_columns(pd.DataFrame(values, columns=["a", 1]), 6)
    assert names == ["a", "1"] and np.array_equal(matrix, values)
    matrix, names = confounds_columns(values[:, 0], 6)
    assert names == ["confound_0"] and matrix.shape == (6, 1)
    path = tmp_path / "rp_run.txt"
    np.savetxt(path, np.zeros((6, 6)))
    matrix, names = confounds_columns(path, 6)
    assert names == MOTION and matrix.shape == (6, 6)


def test_wrong_row_count_keeps_nilearns_message_and_names_the_file(tmp_path):
    with pytest.raises(DesignError, match=r"^Rows in confounds does not match n_scans in run_img at index 2\. "
                                          r"The confounds of run 2 have 5 rows but the run has 6 scans\.$"):
        confounds_columns(np.zeros((5, 1)), 6, index=2)
    path = tmp_path / "rp_short.txt"
    np.savetxt(path, np.zeros((5, 6)))
    with pytest.raises(ConfoundsError, match="Rows in confounds does not match n_scans in run_img at index 0") as info:
        confounds_columns(str(path), 6)
    assert str(path) in str(info.value) and "5 rows" in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------ the Python API
@pytest.fixture(scope="module")
def run_and_motion(fiac_small, tmp_path_factory):
    """Run 1 of the small FIAC-like data, its events, and SPM-style motion parameters as a file."""
    n_scans = nib.load(fiac_small["func1"]).shape[3]
    rng = np.random.default_rng(0)
    motion = rng.normal(scale=0.1, size=(n_scans, 6))
    folder = tmp_path_factory.mktemp("confounds")
    rp = folder / "rp_run1.txt"
    np.savetxt(rp, motion, fmt="%.6e", delimiter="  ")
    as_read = np.loadtxt(rp)  # the numbers the file holds (6 significant digits)
    return {"run": fiac_small["func1"], "events": fiac_small["events1"], "mask": fiac_small["mask"],
            "rp": rp, "frame": pd.DataFrame(as_read, columns=MOTION), "folder": folder}


def _fit(data, confounds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FirstLevelModel(t_r=2.5, mask_img=data["mask"], noise_model="ols")
        return model.fit(data["run"], events=data["events"], confounds=confounds)


@pytest.mark.parametrize("suffix", ["rp_run1.txt", "run1.par", "run1.1D"])
def test_fit_with_a_motion_file_equals_the_fit_with_the_dataframe(run_and_motion, suffix):
    data = run_and_motion
    path = data["folder"] / suffix
    if not path.exists():
        path.write_bytes(data["rp"].read_bytes())
    from_file = _fit(data, str(path))
    from_frame = _fit(data, data["frame"])
    design_file, design_frame = from_file.design_matrices_[0], from_frame.design_matrices_[0]
    assert [c for c in design_file.columns if c.startswith("motion")] == MOTION
    pd.testing.assert_frame_equal(design_file, design_frame)


def test_fit_with_a_motion_file_equals_nilearn_given_its_numbers(run_and_motion):
    """The file's motion columns reach the model as nilearn's do from a DataFrame: same design, same maps."""
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    data = run_and_motion
    ours = _fit(data, str(data["rp"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnModel(t_r=2.5, mask_img=data["mask"], noise_model="ols").fit(
            data["run"], events=data["events"], confounds=data["frame"])
    pd.testing.assert_frame_equal(ours.design_matrices_[0], ref.design_matrices_[0])
    contrast = np.eye(ref.design_matrices_[0].shape[1])[0] - np.eye(ref.design_matrices_[0].shape[1])[1]
    mask = np.asarray(nib.load(data["mask"]).dataobj) > 0
    z_ours = ours.compute_contrast(contrast).get_fdata()[mask]
    z_ref = ref.compute_contrast(contrast).get_fdata()[mask]
    np.testing.assert_allclose(z_ours, z_ref, rtol=0, atol=1e-4)  # OLS: every voxel; nilearn's float32 ~1e-5


def test_fit_refuses_a_file_with_n_a_by_name(run_and_motion):
    data = run_and_motion
    n_scans = len(data["frame"])
    path = data["folder"] / "desc-confounds_timeseries.tsv"
    frame = data["frame"].copy()
    frame.loc[0, "motion_0"] = np.nan
    frame.to_csv(path, sep="\t", index=False, na_rep="n/a")
    assert len(frame) == n_scans
    with pytest.raises(ConfoundsError, match="Extra regressors contain NaN values") as info:
        _fit(data, path)
    assert str(path) in str(info.value)
