"""``daskglm convert`` and the Zarr copies of a study's runs (``daskglm bids --convert-to-zarr``)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from daskglm.cli import main
from daskglm.io.nifti import FileRunSource
from daskglm.io.nifti_zarr import NiftiZarrRunSource
from daskglm.studies.convert import default_zarr_dir, subject_zarr_runs, zarr_copies


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    rng = np.random.default_rng(0)
    paths = []
    for i, suffix in enumerate((".nii.gz", ".nii")):
        data = (rng.standard_normal((5, 6, 4, 9 + i)) * 10 + 100).astype(np.float32)
        path = root / f"sub-01_run-{i + 1}_bold{suffix}"
        nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(path)
        paths.append(path)
    return paths


def test_convert_writes_one_store_per_run(two_runs, tmp_path, capsys):
    assert main(["convert", *map(str, two_runs), "-o", str(tmp_path / "z"), "--time-chunk", "4"]) == 0
    out = capsys.readouterr().out
    assert "2 run(s) converted" in out
    for run in two_runs:
        name = run.name.replace(".nii.gz", "").replace(".nii", "") + ".nii.zarr"
        store = NiftiZarrRunSource(tmp_path / "z" / name)
        assert store.time_chunk == 4 and f"-> {tmp_path / 'z' / name}" in out
        np.testing.assert_array_equal(store.read(0, store.n_scans), FileRunSource(run).read(0, store.n_scans))


def test_convert_refuses_to_overwrite_and_reports_missing_runs(two_runs, tmp_path, capsys):
    assert main(["convert", str(two_runs[0]), "-o", str(tmp_path)]) == 0
    assert main(["convert", str(two_runs[0]), "-o", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(two_runs[0]), "-o", str(tmp_path), "--overwrite", "--codec", "gzip"]) == 0
    assert main(["convert", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["convert", str(two_runs[0]), "-o", str(tmp_path), "--time-chunk", "0"]) == 2


def test_study_copies_are_made_once_and_redone_when_a_run_changes(two_runs, tmp_path):
    folder = tmp_path / "sub-01"
    first = subject_zarr_runs([str(r) for r in two_runs], folder)
    assert [p.endswith(".nii.zarr") for p in first] == [True, True]
    stamps = [(NiftiZarrRunSource(p).identity()["mtime_ns"]) for p in first]
    assert subject_zarr_runs([str(r) for r in two_runs], folder) == first  # reused as they are
    assert [(NiftiZarrRunSource(p).identity()["mtime_ns"]) for p in first] == stamps
    changed = tmp_path / two_runs[1].name
    img = nib.load(two_runs[1])
    nib.Nifti1Image(img.get_fdata(dtype=np.float32) + 1, img.affine).to_filename(changed)
    again = subject_zarr_runs([str(two_runs[0]), str(changed)], folder)
    np.testing.assert_array_equal(NiftiZarrRunSource(again[1]).read(0, 3), FileRunSource(changed).read(0, 3))
    assert NiftiZarrRunSource(again[0]).identity()["mtime_ns"] == stamps[0]
    error = FileNotFoundError("no run")
    queried = [("01", (None, [str(two_runs[0])], None, None)), ("02", error)]
    copies = list(zarr_copies(queried, tmp_path / "study"))
    assert copies[0][1][1] == [str(tmp_path / "study" / "sub-01" / "sub-01_run-1_bold.nii.zarr")]
    assert copies[1] == ("02", error)
    assert default_zarr_dir(tmp_path / "out" / "study.zarr") == str(tmp_path / "out" / "derivatives" / "daskglm-zarr")


def test_fit_from_converted_runs_gives_the_gzip_fit(fiac_small, tmp_path, monkeypatch):
    import daskglm.graph.stream as stream
    from daskglm import open_model

    monkeypatch.setattr(stream, "worker_threads", lambda: 1)  # one streamed piece per run, as the .nii.gz
    runs = [fiac_small["func1"], fiac_small["func2"]]
    assert main(["convert", *runs, "-o", str(tmp_path / "z"), "--time-chunk", "6"]) == 0
    stores = [str(tmp_path / "z" / "run1_bold.nii.zarr"), str(tmp_path / "z" / "run2_bold.nii.zarr")]
    designs = [fiac_small["design_matrix1"], fiac_small["design_matrix2"]]
    for name, inputs in (("gz", runs), ("zarr", stores)):
        assert main(["fit", *inputs, "--design", *designs, "--mask", fiac_small["mask"], "-o",
                     str(tmp_path / f"{name}.zarr"), "--no-progress"]) == 0
    z = {name: open_model(tmp_path / f"{name}.zarr").compute_contrast([1, -1], output_type="z_score").get_fdata()
         for name in ("gz", "zarr")}
    np.testing.assert_array_equal(z["zarr"], z["gz"])
