"""The ``daskglm`` command line, run in-process through ``main([...])``."""

from __future__ import annotations

import json
import subprocess

import nibabel as nib
import numpy as np
import pytest

from daskglm import open_model
from daskglm.cli import build_parser, main, parse_contrast
from tests.conftest import load_named_design


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def named_designs(fiac_small, tmp_path_factory):
    """The designs as CSV files with the condition names as columns."""
    folder = tmp_path_factory.mktemp("designs")
    paths = []
    for i in (1, 2):
        df = load_named_design(fiac_small[f"design_matrix{i}"])
        paths.append(folder / f"design{i}.csv")
        df.to_csv(paths[-1], index=False)
    return paths


@pytest.fixture(scope="module")
def store(fiac_small, named_designs, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "fit.zarr"
    code = main(["fit", fiac_small["func1"], fiac_small["func2"], "--design", *map(str, named_designs),
                 "--mask", fiac_small["mask"], "-o", str(path), "--scheduler", "synchronous",
                 "--no-progress"])
    assert code == 0
    return path


def test_fit_writes_a_store(store, fiac_small):
    model = open_model(store)
    assert len(model.design_matrices_) == 2
    assert list(model.design_matrices_[0].columns)[:2] == ["SSt-SSp", "SSt-DSp"]
    mask = np.asarray(nib.load(fiac_small["mask"]).dataobj) != 0
    np.testing.assert_array_equal(np.asarray(model.mask_img_.dataobj) != 0, mask)


def test_fit_from_events_with_progress(fiac_small, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("daskglm.cli.runtime.PROGRESS_MINIMUM", 0.0)
    out = tmp_path / "events.zarr"
    code, stdout, err = run(capsys, "fit", fiac_small["func1"], "--events", fiac_small["events1"],
                            "--t-r", "2.5", "--mask", fiac_small["mask"], "--noise-model", "ols",
                            "--smoothing-fwhm", "4", "--progress", "-o", out)
    assert code == 0, err
    assert "store written to" in stdout and "DSt-DSp" in stdout
    assert "Completed" in err  # dask's progress bar, on stderr, forced by --progress
    assert open_model(out).get_params()["noise_model"] == "ols"


def test_fit_with_exact_ar2_whitening(fiac_small, tmp_path, capsys):
    out = tmp_path / "exact.zarr"
    code, stdout, err = run(capsys, "fit", fiac_small["func1"], "--design", fiac_small["design_matrix1"],
                            "--mask", fiac_small["mask"], "--noise-model", "ar2", "--whitening", "exact",
                            "--no-progress", "-o", out)
    assert code == 0, err
    params = open_model(out).get_params()
    assert (params["noise_model"], params["whitening"]) == ("ar2", "exact")
    code, _, err = run(capsys, "fit", fiac_small["func1"], "--design", fiac_small["design_matrix1"],
                       "--whitening", "approximate", "-o", tmp_path / "bad.zarr")
    assert code == 2 and "--whitening" in err


def test_contrast_expressions_json_and_output_types(store, tmp_path, capsys):
    contrasts = tmp_path / "contrasts.json"
    contrasts.write_text(json.dumps({"EoI": np.eye(5, 9).tolist(), "first": "FirstSt"}))
    out = tmp_path / "maps"
    code, stdout, err = run(capsys, "contrast", store, "DSt_minus_SSt=[-1, -1, 1, 1]", "DSt-DSp",
                            "-f", contrasts, "-t", "z_score", "effect_size", "-o", out)
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{n}_{t}.nii.gz" for n in ("DSt_minus_SSt", "DSt-DSp", "EoI", "first")
                           for t in ("z_map", "effect_size"))
    assert len(stdout.splitlines()) == 8
    assert nib.load(out / "EoI_effect_size.nii.gz").shape[-1] == 5  # F: one effect per row
    # nilearn-style warnings are shown once each, as one line
    assert err.count("daskglm: warning: The same contrast will be used for all") == 1
    expected = open_model(store).compute_contrast("DSt-DSp")
    np.testing.assert_allclose(nib.load(out / "DSt-DSp_z_map.nii.gz").get_fdata(),
                               expected.get_fdata(), atol=1e-10)


def test_report_command(store, fiac_small, tmp_path, capsys):
    html = tmp_path / "r.html"
    code, stdout, err = run(capsys, "report", store, "FirstSt", "--bg-img", fiac_small["mask"],
                            "--height-control", "bonferroni", "--alpha", "0.05", "-o", html,
                            "--title", "CLI report", "--no-progress")
    assert code == 0, err
    text = html.read_text(encoding="utf-8")
    assert "<title>CLI report</title>" in text and 'id="c-FirstSt"' in text
    assert "bonferroni &lt; 0.05" in text


def test_demo_command(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, err = run(capsys, "demo", "--out", out, "--shape", 12, 14, 12, "--n-scans", 60,
                            "--no-report", "--quiet")
    assert code == 0, err
    z_maps = sorted(p.name for p in (out / "results").glob("*_z_map.nii.gz"))
    assert len(z_maps) == 8 and "Effects_of_interest_z_map.nii.gz" in z_maps
    plots = {p.name for p in (out / "plots").glob("*.png")}
    assert {"design_matrix_run1.png", "DSt_minus_SSt_fixed_effects.png",
            "Effects_of_interest_glass_brain.png", "Deactivation_contrast_matrix.png",
            "Deactivation_stat_map.png"} <= plots
    assert open_model(out / "fit.zarr").design_matrices_[0].shape[1] > 5
    # the maps show the simulated activations where the ground truth puts them
    truth = {k: np.asarray(nib.load(v).dataobj) > 0
             for k, v in json.loads((out / "data" / "dataset.json").read_text())["ground_truth"].items()}
    f_map = nib.load(out / "results" / "Effects_of_interest_z_map.nii.gz").get_fdata()
    for name, region in truth.items():
        assert np.median(f_map[region]) > 3.0, name
    z = nib.load(out / "results" / "DSt_minus_SSt_z_map.nii.gz").get_fdata()
    assert truth["sentence_repetition"][np.unravel_index(np.argmax(z), z.shape)]
    assert np.median(z[truth["speaker_repetition"]]) < 2.0


@pytest.mark.parametrize("argv, message", [
    (["fit", "missing.nii.gz", "--design", "d.npz", "-o", "x.zarr"], "The run 'missing.nii.gz' does not exist"),
    (["contrast", "missing.zarr", "[1, 0]"], "The store 'missing.zarr' does not exist"),
    (["contrast", "{store}", "NoSuchColumn - 1"], "is not valid"),
    (["contrast", "{store}", "[1, 2"], "not a valid JSON array"),
    (["contrast", "{store}", "[[[1]]]"], "1-D (t) or 2-D (F)"),
    (["contrast", "{store}", "-f", "missing.json"], "contrasts file 'missing.json' does not exist"),
    (["contrast", "{store}"], "No contrast given"),
    (["contrast", "{store}", "[1]", "--scheduler", "nonsense"], "neither one of"),
    (["report", "{store}", "FirstSt", "--alpha", "2"], "alpha must be"),
    (["fit", "{func}", "--events", "{events}", "-o", "x.zarr"], "--events needs --t-r"),
    (["fit", "{func}", "-o", "{store}"], "Give the design"),
    (["fit", "{func}", "--design", "{func}", "-o", "{store}"], "exists; pass --overwrite"),
])
def test_user_errors_are_one_line(argv, message, store, fiac_small, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    fill = {"store": str(store), "func": fiac_small["func1"], "events": fiac_small["events1"]}
    code, stdout, err = run(capsys, *[a.format(**fill) for a in argv])
    assert code == 2
    lines = [line for line in err.splitlines() if not line.startswith("daskglm: warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("daskglm: error: ") and message in lines[0], err
    assert "Traceback" not in err


def test_traceback_flag_reraises(capsys):
    with pytest.raises(FileNotFoundError):
        main(["--traceback", "contrast", "missing.zarr", "[1]"])


def test_argparse_errors_and_help(capsys):
    assert main(["fit"]) == 2  # missing arguments: argparse's usage message
    assert "usage: daskglm fit" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["contrast", "--help"]) == 0
    out = capsys.readouterr().out
    assert "NAME=DEFINITION" in out and "--scheduler" in out and "examples:" in out


def test_subcommand_hook(monkeypatch):
    import types

    module = types.ModuleType("daskglm.studies.subjects")

    def add_subcommand(subparsers):
        p = subparsers.add_parser("fit-subjects", help="test hook")
        p.set_defaults(func=lambda args: 7)

    module.add_subcommand = add_subcommand
    monkeypatch.setattr("daskglm.cli.parser.add_fit_subjects", module.add_subcommand)
    assert "fit-subjects" in build_parser().format_help()
    assert main(["fit-subjects"]) == 7


@pytest.mark.parametrize("text, expected", [
    ("a - b", ("a - b", "a - b")),
    ("name=a - b", ("name", "a - b")),
    ("c=[1, 0, -1]", ("c", [1.0, 0.0, -1.0])),
    ("[[1, 0], [0, 1]]", ("[[1, 0], [0, 1]]", [[1.0, 0.0], [0.0, 1.0]])),
])
def test_parse_contrast(text, expected):
    name, definition = parse_contrast(text)
    assert name == expected[0]
    if isinstance(expected[1], str):
        assert definition == expected[1]
    else:
        np.testing.assert_array_equal(definition, expected[1])


def test_distributed_scheduler_address(store, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        code, stdout, err = run(capsys, "contrast", store, "FirstSt", "-o", tmp_path,
                                "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    assert (tmp_path / "FirstSt_z_map.nii.gz").exists()


def test_console_script_help():
    result = subprocess.run(["daskglm", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("demo", "fit", "contrast", "report"):
        assert command in result.stdout
    assert "daskglm demo --out daskglm_demo" in result.stdout


# --------------------------------------------------- every FirstLevelModel parameter, confounds
def _fit_parser():
    import argparse

    from daskglm.cli.parser import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["fit"]


def test_fit_exposes_every_first_level_model_parameter():
    import inspect

    from daskglm import FirstLevelModel
    from daskglm.cli.parser import FIT_EXCLUDED, FIT_OPTIONS

    params = {n for n, p in inspect.signature(FirstLevelModel.__init__).parameters.items()
              if n != "self" and p.kind is not p.VAR_KEYWORD}
    covered = set(FIT_OPTIONS.values())
    assert params - covered - set(FIT_EXCLUDED) == set(), "parameters without a fit option"
    assert not covered & set(FIT_EXCLUDED)
    assert set(FIT_EXCLUDED) <= params and covered <= params
    assert all(len(reason) > 20 for reason in FIT_EXCLUDED.values())
    dests = {a.dest: a for a in _fit_parser()._actions}
    help_text = _fit_parser().format_help()
    for dest in FIT_OPTIONS:
        assert dest in dests, dest
        assert dests[dest].option_strings[0] in help_text


def test_fit_options_reach_the_model(fiac_small):
    from daskglm.cli.parser import FIT_OPTIONS, build_parser
    from daskglm.cli.values import fit_model_params

    args = build_parser().parse_args([
        "fit", "run.nii", "-o", "x.zarr", "--t-r", "2", "--slice-time-ref", "0.5", "--hrf-model", "fir",
        "--fir-delays", "0", "1", "2", "--drift-model", "polynomial", "--drift-order", "3",
        "--high-pass", "0.02", "--min-onset", "-12", "--mask", "none", "--smoothing-fwhm", "6",
        "--signal-scaling", "0,1", "--noise-model", "ar2", "--whitening", "exact", "--diagnostic-lags", "2",
        "--keep-residuals", "--subject-label", "01", "--chunks", "32", "5000", "--target-affine", "4",
    ])
    params = fit_model_params(args)
    assert set(params) == set(FIT_OPTIONS.values())
    np.testing.assert_array_equal(params.pop("target_affine"), np.diag([4.0, 4.0, 4.0]))
    assert params.pop("target_shape") is None
    assert params == {
        "t_r": 2.0, "slice_time_ref": 0.5, "hrf_model": "fir", "fir_delays": [0, 1, 2],
        "drift_model": "polynomial", "drift_order": 3, "high_pass": 0.02, "min_onset": -12.0,
        "mask_img": False, "smoothing_fwhm": 6.0, "signal_scaling": (0, 1), "noise_model": "ar2",
        "whitening": "exact", "diagnostic_lags": 2, "minimize_memory": False, "subject_label": "01",
        "chunks": {"time": 32, "voxel": 5000},
    }
    from daskglm import FirstLevelModel

    FirstLevelModel(**params)._fit_options()  # a valid model: fit's own parameter checks, without data
    grid = fit_model_params(build_parser().parse_args(["fit", "r.nii", "-o", "x", "--target-affine",
                                                       str(fiac_small["mask"])]))
    mask = nib.load(fiac_small["mask"])
    np.testing.assert_array_equal(grid["target_affine"], mask.affine)
    assert grid["target_shape"] == mask.shape


def test_fit_with_fir_delays_and_spm_motion_confounds(fiac_small, tmp_path, capsys):
    n_scans = nib.load(fiac_small["func1"]).shape[3]
    rng = np.random.default_rng(0)
    rp = tmp_path / "rp_run1.txt"  # SPM's realignment parameters: six columns, no header
    np.savetxt(rp, rng.normal(scale=0.1, size=(n_scans, 6)), fmt="%.6e", delimiter="  ")
    out = tmp_path / "fir.zarr"
    code, stdout, err = run(capsys, "fit", fiac_small["func1"], "--events", fiac_small["events1"],
                            "--t-r", "2.5", "--mask", fiac_small["mask"], "--noise-model", "ols",
                            "--hrf-model", "fir", "--fir-delays", "0", "1", "2", "--confounds", rp,
                            "-o", out)
    assert code == 0, err
    columns = stdout.split("Design columns: ")[1].split(", ")
    assert [c for c in columns if c.startswith("DSt-DSp")] == [f"DSt-DSp_delay_{d}" for d in (0, 1, 2)]
    assert [c for c in columns if c.startswith("motion")] == [f"motion_{i}" for i in range(6)]
    assert "Completed" not in err  # stderr is not a terminal: no progress bar


def test_cli_confounds_error_is_one_line_naming_the_file(fiac_small, tmp_path, capsys):
    bad = tmp_path / "rp_broken.par"
    bad.write_text("0.1 0.2 x 0 0 0\n")
    code, _, err = run(capsys, "fit", fiac_small["func1"], "--events", fiac_small["events1"],
                       "--t-r", "2.5", "--confounds", bad, "-o", tmp_path / "f.zarr")
    assert code == 2 and str(bad) in err and err.count("\n") == 1


def test_t_r_disagreeing_with_the_header_warns(fiac_small, tmp_path, capsys):
    header_t_r = float(nib.load(fiac_small["func1"]).header.get_zooms()[3])
    code, _, err = run(capsys, "fit", fiac_small["func1"], "--events", fiac_small["events1"],
                       "--t-r", str(8 * header_t_r), "--mask", fiac_small["mask"], "--noise-model", "ols",
                       "-o", tmp_path / "slow.zarr")
    assert code == 0, err
    assert "differs from the repetition time in the header" in err and fiac_small["func1"] in err
    code, _, err = run(capsys, "fit", fiac_small["func1"], "--events", fiac_small["events1"],
                       "--t-r", str(header_t_r), "--mask", fiac_small["mask"], "--noise-model", "ols",
                       "-o", tmp_path / "same.zarr")
    assert code == 0 and "differs" not in err


def test_progress_only_on_a_terminal(monkeypatch):
    from daskglm.cli.parser import build_parser, resolve_progress

    parser = build_parser()

    class Tty:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    for tty, argv, hidden in [(False, [], True), (True, [], False), (False, ["--progress"], False),
                              (True, ["--no-progress"], True)]:
        monkeypatch.setattr("sys.stderr", Tty(tty))
        args = resolve_progress(parser.parse_args(["contrast", "s.zarr", "a", *argv]))
        assert args.no_progress is hidden, (tty, argv)


def test_mask_on_another_grid_is_one_line_with_a_hint(fiac_small, tmp_path, capsys):
    mask = nib.load(fiac_small["mask"])
    shifted = nib.Nifti1Image(np.asarray(mask.dataobj), mask.affine @ np.diag([2.0, 2.0, 2.0, 1.0]))
    nib.save(shifted, tmp_path / "mask_2x.nii.gz")
    code, _, err = run(capsys, "fit", fiac_small["func1"], "--events", fiac_small["events1"], "--t-r", "2.5",
                       "--mask", tmp_path / "mask_2x.nii.gz", "-o", tmp_path / "f.zarr")
    assert code == 2 and err.count("\n") == 1
    assert "resample_to_img" in err and "--target-affine" in err and "6x6x6 mm" in err


def test_confounds_with_the_wrong_number_of_rows_name_the_file(fiac_small, tmp_path, capsys):
    short = tmp_path / "rp_short.txt"
    np.savetxt(short, np.zeros((5, 6)))
    code, _, err = run(capsys, "fit", fiac_small["func1"], "--events", fiac_small["events1"], "--t-r", "2.5",
                       "--confounds", short, "-o", tmp_path / "f.zarr")
    assert code == 2 and str(short) in err and "5 rows" in err and err.count("\n") == 1


# ------------------------------------------------- fMRIPrep confounds, --resume
@pytest.fixture(scope="module")
def fmriprep(tmp_path_factory):
    """Two runs of one fMRIPrep-like subject, their events and confounds tables (n/a, FD spikes)."""
    from daskglm.data.bids import make_bids_dataset

    ds = make_bids_dataset(tmp_path_factory.mktemp("fmriprep") / "ds", n_subjects=1, n_sessions=0, n_runs=2,
                           shape=(8, 9, 7), n_scans=40, seed=4)
    runs = ds["runs"]["01"]
    events = [r.replace("/derivatives/", "/").replace("_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz",
                                                      "_events.tsv") for r in runs]
    tables = [r.split("_space-")[0] + "_desc-confounds_timeseries.tsv" for r in runs]
    return {"runs": runs, "events": events, "tables": tables}


def _nilearn_z(runs, events, confounds, sample_masks=None):
    import warnings

    import pandas as pd
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = NilearnModel(t_r=2.0, slice_time_ref=0.5).fit(
            runs, events=[pd.read_csv(e, sep="\t") for e in events], confounds=confounds, sample_masks=sample_masks)
        return model.compute_contrast("face - house").get_fdata(), np.asarray(model.masker_.mask_img_.dataobj) > 0


def _store_z(store):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_model(store).compute_contrast("face - house").get_fdata()


def test_fit_confounds_strategy_equals_nilearn_with_load_confounds(fmriprep, tmp_path, capsys):
    """`daskglm fit --confounds-strategy`: tables found next to the runs, load_confounds' sample masks applied."""
    from nilearn.interfaces.fmriprep import load_confounds

    out = tmp_path / "fit.zarr"
    code, stdout, err = run(capsys, "fit", *fmriprep["runs"], "--events", *fmriprep["events"], "--t-r", "2",
                            "--slice-time-ref", "0.5", "--confounds-strategy", "motion", "wm_csf", "scrub",
                            "--confounds-option", "scrub=0", "--confounds-option", "fd_threshold=0.3", "-o", out)
    assert code == 0, err
    confounds, masks = load_confounds(fmriprep["runs"], strategy=("motion", "wm_csf", "scrub"), scrub=0,
                                      fd_threshold=0.3)
    kept = sum(len(m) for m in masks)
    assert f"({kept} of 80 scans kept)" in stdout and kept < 80
    z_ref, inside = _nilearn_z(fmriprep["runs"], fmriprep["events"], confounds, masks)
    assert np.mean(np.abs(_store_z(out)[inside] - z_ref[inside]) < 1e-4) >= 0.999
    # the same with the tables named (--confounds), and columns picked from a raw table
    code, _, err = run(capsys, "fit", *fmriprep["runs"], "--events", *fmriprep["events"], "--t-r", "2",
                       "--slice-time-ref", "0.5", "--confounds", *fmriprep["tables"],
                       "--confounds-columns", "trans_?", "rot_?", "framewise_displacement", "-o", tmp_path / "c.zarr")
    assert code == 0, err
    picked = []
    for table in fmriprep["tables"]:
        import pandas as pd

        frame = pd.read_csv(table, sep="\t")[["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z",
                                             "framewise_displacement"]]
        frame.iloc[0, -1] = frame.iloc[1, -1]  # load_confounds' filling of the first row
        picked.append(frame)
    z_ref, inside = _nilearn_z(fmriprep["runs"], fmriprep["events"], picked)
    assert np.mean(np.abs(_store_z(tmp_path / "c.zarr")[inside] - z_ref[inside]) < 1e-4) >= 0.999
    # --drop-initial and the strategy's scrubbing: the scans both keep
    code, stdout, err = run(capsys, "fit", *fmriprep["runs"], "--events", *fmriprep["events"], "--t-r", "2",
                            "--confounds-strategy", "motion", "scrub", "--confounds-option", "scrub=0",
                            "--confounds-option", "fd_threshold=0.3", "--drop-initial", "6", "--noise-model", "ols",
                            "--mask", "none", "-o", tmp_path / "d.zarr")
    assert code == 0, err
    both = [m[m >= 6] for m in masks]
    assert f"({sum(len(m) for m in both)} of 80 scans kept)" in stdout
    assert [len(d) for d in open_model(tmp_path / "d.zarr").design_matrices_] == [len(m) for m in both]


@pytest.mark.parametrize("extra, message", [
    ([], "Extra regressors contain NaN values"),
    (["--confounds-option", "scrub=0"], "--confounds-option goes with --confounds-strategy"),
    (["--confounds-strategy", "motion", "--confounds-option", "scrubb=0"], "load_confounds has no option scrubb"),
    (["--confounds-columns", "framwise_displacement"], "did you mean framewise_displacement"),
])
def test_fmriprep_confounds_errors_are_one_line(fmriprep, tmp_path, capsys, extra, message):
    code, _, err = run(capsys, "fit", fmriprep["runs"][0], "--events", fmriprep["events"][0], "--t-r", "2",
                       "--confounds", fmriprep["tables"][0], *extra, "-o", tmp_path / "e.zarr")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert "=True" not in err


def test_fit_resume_reuses_the_runs_an_interrupted_fit_finished(fmriprep, tmp_path, capsys, monkeypatch):
    """Ctrl-C after the first run is fitted: that run stays in the store; --resume fits only the other."""
    from dask.callbacks import Callback

    from daskglm.store.zarr import complete_run_keys

    class CtrlC(Callback):  # the user's Ctrl-C, as soon as one run's group is committed
        def _posttask(self, key, result, dsk, state, worker_id):
            name = key[0] if isinstance(key, tuple) else key
            if str(name).startswith("_finalize_group") and str(result).startswith("run"):
                raise KeyboardInterrupt

    out = tmp_path / "fit.zarr"
    argv = ["fit", *fmriprep["runs"], "--events", *fmriprep["events"], "--t-r", "2", "--slice-time-ref", "0.5",
            "--confounds-strategy", "motion", "wm_csf", "--confounds-option", "motion=basic", "-o", out]
    with CtrlC():
        code, _, err = run(capsys, *argv)
    assert code == 130 and "interrupted" in err
    assert len(complete_run_keys(out)) == 1  # the finished run was kept
    code, _, err = run(capsys, *argv)
    assert code == 2 and "pass --overwrite to replace it, or --resume" in err
    code, stdout, err = run(capsys, *argv, "--resume")
    assert code == 0, err
    assert "(1 reused from the store)" in stdout
    code, stdout, _ = run(capsys, *argv[:-2], "-o", tmp_path / "clean.zarr")
    np.testing.assert_array_equal(_store_z(out), _store_z(tmp_path / "clean.zarr"))
    # everything reused; BIDS derivatives named as nilearn's, the mask used recorded
    derivatives = tmp_path / "derivatives"
    code, stdout, err = run(capsys, *argv, "--resume", "--bids-out", derivatives, "--contrast", "face-house")
    assert code == 0 and "(2 reused from the store)" in stdout, err
    z_file = derivatives / "sub-01" / "sub-01_task-faces_space-MNI152NLin2009cAsym_contrast-faceMinusHouse_stat-z_statmap.nii.gz"
    np.testing.assert_array_equal(nib.load(z_file).get_fdata(), _store_z(out))
    statmap = json.loads((derivatives / "sub-01" / "statmap.json").read_text())
    assert statmap["ModelParameters"]["mask_img"] == "epi mask computed"
    assert run(capsys, *argv, "--resume", "--bids-out", derivatives)[0] == 2  # --bids-out needs --contrast
    assert run(capsys, *argv, "--resume", "--overwrite")[0] == 2  # one or the other


def test_help_says_what_the_files_are_named(store, tmp_path, capsys):
    from daskglm.glm.contrasts import OUTPUT_SUFFIX

    assert main(["contrast", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for output_type, suffix in OUTPUT_SUFFIX.items():
        assert f"{suffix} ({output_type})" in text
    code, stdout, _ = run(capsys, "contrast", store, "FirstSt=[1, 0, 0, 0]", "-t", *OUTPUT_SUFFIX, "-o", tmp_path)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "probe") == sorted(
        f"FirstSt_{s}.nii.gz" for s in OUTPUT_SUFFIX.values())
    assert main(["fit", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--signal-scaling SCALING" in text and "{0,1,0,1" not in text and "--resume" in text
