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
                            "--smoothing-fwhm", "4", "-o", out)
    assert code == 0, err
    assert "store written to" in stdout and "DSt-DSp" in stdout
    assert "Completed" in err  # dask's progress bar, on stderr
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
    assert err.count("daskglm: warning: One contrast given") == 1
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

    module = types.ModuleType("daskglm.subjects")

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
