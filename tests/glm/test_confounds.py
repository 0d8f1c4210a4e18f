"""Confounds files: one reader (``daskglm.glm.confounds``) for the Python API and the command line.

Real files written in ``tmp_path``: fMRIPrep-style TSV/CSV with a header,
SPM ``rp_*.txt``, FSL ``.par``, AFNI ``.1D``; a fit given a file has the design
of the fit given the same numbers as a DataFrame, and nilearn's design and maps
for that DataFrame; refusals name the file.  fMRIPrep's tables (a generated
run and its ``desc-confounds_timeseries.tsv`` + ``.json``,
:func:`daskglm.data.bids.make_bids_dataset`) read with a ``load_confounds``
strategy equal nilearn's ``load_confounds`` on the run (table and sample
mask), and the fit equals nilearn's ``FirstLevelModel`` given them.
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
    listed = str(info.value).split("in: ")[1].split(". ")[0]
    assert listed == "framewise_displacement"
    assert "--confounds-strategy" in str(info.value) and "columns" in str(info.value)  # what to do


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


# ------------------------------------------------------- fMRIPrep's tables
@pytest.fixture(scope="module")
def fmriprep(tmp_path_factory):
    """One subject, two runs of an fMRIPrep-like dataset (n/a in first rows, FD spikes, aCompCor metadata)."""
    from daskglm.data.bids import make_bids_dataset

    ds = make_bids_dataset(tmp_path_factory.mktemp("fmriprep") / "ds", n_subjects=1, n_sessions=0, n_runs=2,
                           shape=(8, 9, 7), n_scans=40, seed=3)
    runs = ds["runs"]["01"]
    events = [r.replace("/derivatives/", "/").replace("_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz",
                                                      "_events.tsv") for r in runs]
    tables = [r.split("_space-")[0] + "_desc-confounds_timeseries.tsv" for r in runs]
    return {"runs": runs, "events": events, "tables": tables, "t_r": ds["t_r"]}


STRATEGIES = [
    (("motion", "wm_csf", "scrub"), {"scrub": 0, "fd_threshold": 0.3}),
    (("high_pass", "motion", "compcor"), {"motion": "basic", "n_compcor": 3}),
    (("motion", "global_signal"), {"motion": "derivatives", "global_signal": "full", "demean": False}),
    (("motion", "non_steady_state"), {"motion": "power2"}),
]


@pytest.mark.parametrize("strategy, options", STRATEGIES)
def test_strategy_equals_load_confounds_on_the_run(fmriprep, strategy, options):
    from nilearn.interfaces.fmriprep import load_confounds

    from daskglm.glm.confounds import fmriprep_confounds_file

    run, table = fmriprep["runs"][0], fmriprep["tables"][0]
    assert fmriprep_confounds_file(run) == table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non_steady_state: nilearn's "always detected"
        expected, mask = load_confounds(run, strategy=strategy, **options)
        ours = read_confounds(table, strategy=strategy, **options)
    pd.testing.assert_frame_equal(ours, expected)
    assert not ours.isna().any().any()
    if mask is None:
        assert "sample_mask" not in ours.attrs
    else:
        assert ours.attrs["sample_mask"] == tuple(mask) and len(mask) < len(ours)


def test_columns_are_picked_and_filled_as_load_confounds(fmriprep):
    from nilearn.interfaces.fmriprep import load_confounds

    table = fmriprep["tables"][0]
    raw = pd.read_csv(table, sep="\t")
    assert raw["trans_x_derivative1"].isna().iloc[0]
    picked = read_confounds(table, columns=["trans_?", "trans_x_derivative1", "framewise_displacement"])
    assert list(picked.columns) == ["trans_x", "trans_y", "trans_z", "trans_x_derivative1",
                                    "framewise_displacement"]
    reference, _ = load_confounds(fmriprep["runs"][0], strategy=("motion",), motion="derivatives", demean=False)
    np.testing.assert_array_equal(picked["trans_x_derivative1"], reference["trans_x_derivative1"])
    assert picked["framewise_displacement"].iloc[0] == raw["framewise_displacement"].iloc[1]
    np.testing.assert_array_equal(picked["trans_x"], raw["trans_x"])  # nothing else changed
    # of what a strategy chose; the strategy's sample mask kept
    scrubbed = read_confounds(table, strategy=("motion", "scrub"), columns=["rot_*"], motion="basic", scrub=0,
                              fd_threshold=0.3)
    assert list(scrubbed.columns) == ["rot_x", "rot_y", "rot_z"] and "sample_mask" in scrubbed.attrs


def test_confounds_reader_refusals(fmriprep, tmp_path):
    table = fmriprep["tables"][0]
    with pytest.raises(ConfoundsError, match="no column 'framwise_displacement' .*did you mean framewise_displacement"):
        read_confounds(table, columns=["framwise_displacement"])
    with pytest.raises(TypeError, match="go with a strategy"):
        read_confounds(table, scrub=0)
    with pytest.raises(TypeError, match="Unknown load_confounds option.*'scrubbing'"):
        read_confounds(table, strategy=("motion",), scrubbing=0)
    with pytest.raises(ConfoundsError, match=r"load_confounds could not use .*wm_csf.*keywords or parameters are "
                                             r"missing"):
        bare = tmp_path / "motion_only.tsv"
        pd.read_csv(table, sep="\t")[["trans_x", "trans_y"]].to_csv(bare, sep="\t", index=False)
        read_confounds(bare, strategy=("wm_csf",))
    middle = tmp_path / "gap.tsv"
    pd.DataFrame({"a": [np.nan, 1.0, np.nan, 2.0], "b": [1.0, 2.0, 3.0, 4.0]}).to_csv(middle, sep="\t", index=False,
                                                                                    na_rep="n/a")
    with pytest.raises(ConfoundsError, match="after the first row in: a"):
        read_confounds(middle, columns=["a"])
    from daskglm.glm.confounds import fmriprep_confounds_file

    with pytest.raises(ConfoundsError, match="No fMRIPrep confounds table found for the run"):
        fmriprep_confounds_file(tmp_path / "sub-02_task-x_desc-preproc_bold.nii.gz")


def test_fit_with_load_confounds_strategy_equals_nilearn(fmriprep):
    """Two runs, scrubbing: daskglm fed read_confounds' tables (sample masks on board) = nilearn fed load_confounds'."""
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel
    from nilearn.interfaces.fmriprep import load_confounds

    strategy, options = ("motion", "wm_csf", "scrub"), {"motion": "basic", "scrub": 0, "fd_threshold": 0.3}
    confounds, masks = load_confounds(fmriprep["runs"], strategy=strategy, **options)
    assert all(m is not None and len(m) < 40 for m in masks)
    events = [pd.read_csv(e, sep="\t") for e in fmriprep["events"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnModel(t_r=fmriprep["t_r"], slice_time_ref=0.5).fit(
            fmriprep["runs"], events=events, confounds=confounds, sample_masks=masks)
        ours = FirstLevelModel(t_r=fmriprep["t_r"], slice_time_ref=0.5).fit(
            fmriprep["runs"], events=fmriprep["events"],
            confounds=[read_confounds(t, strategy=strategy, **options) for t in fmriprep["tables"]])
        for d_ours, d_ref in zip(ours.design_matrices_, ref.design_matrices_):
            pd.testing.assert_frame_equal(d_ours, d_ref)
        inside = np.asarray(ref.masker_.mask_img_.dataobj) > 0
        np.testing.assert_array_equal(np.asarray(ours.mask_img_.dataobj) > 0, inside)
        z_ours = ours.compute_contrast("face - house").get_fdata()[inside]
        z_ref = ref.compute_contrast("face - house").get_fdata()[inside]
    assert np.mean(np.abs(z_ours - z_ref) < 1e-4) >= 0.999
