"""The command line when things go wrong: one line, exit 2, nothing computed or lost in vain.

A contrasts file holding code; an ``OSError`` while maps are written (a full
disk); a read-only output, found before the fit is computed; a full disk while
``daskglm fit --overwrite`` writes a store (the old fit is kept); and the
writability probe itself.  The inputs are the runs of unequal widths and their
store (``unequal``, ``store``: ``tests/conftest.py``).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from daskglm import open_model
from daskglm.cli import main
from tests._unequal import _z


def test_cli_contrasts_file_with_code(store, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "contrasts.json"
    spec.write_text(json.dumps({"evil": "a.to_csv('pwned')"}))
    assert main(["contrast", str(store), "-f", str(spec), "-o", str(tmp_path / "out"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") <= 4 and "not valid" in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()


def test_cli_oserror_is_one_line_exit_2(store, tmp_path, capsys, monkeypatch):
    import errno

    import daskglm.io.export as export

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x.nii.gz"))

    monkeypatch.setattr(export.nib.Nifti1Image, "to_file_map", full_disk)  # under every writer
    status = main(["contrast", str(store), "a - b", "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "No space left on device" in err and "Traceback" not in err
    assert err.count("daskglm: error: ") == 1 and all(
        line.startswith(("daskglm: warning:", "daskglm: error: ")) for line in err.splitlines()), err


def test_cli_fit_checks_the_output_before_computing(unequal, tmp_path, capsys, monkeypatch):
    import errno

    import daskglm.cli.runtime as runtime
    from daskglm.graph.state import FittedState

    for i, (run, design) in enumerate(zip(unequal["runs"], unequal["designs"])):
        nib.save(run, tmp_path / f"run{i}.nii")
        design.to_csv(tmp_path / f"design{i}.csv")
    nib.save(unequal["mask"], tmp_path / "mask.nii")
    real_probe = runtime.check_writable

    def read_only(path, directory):
        if "ro" in str(path):
            raise OSError(errno.EROFS, f"cannot write the output {str(path)!r} (Read-only file system)")
        return real_probe(path, directory)

    def no_compute(self):
        raise AssertionError("the fit was computed before the output was checked")

    monkeypatch.setattr("daskglm.cli.commands.check_writable", read_only)
    monkeypatch.setattr(FittedState, "persist", no_compute)
    args = ["fit", str(tmp_path / "run0.nii"), str(tmp_path / "run1.nii"), "--design",
            str(tmp_path / "design0.csv"), str(tmp_path / "design1.csv"), "--mask", str(tmp_path / "mask.nii"),
            "-o", str(tmp_path / "ro" / "fit.zarr"), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Read-only file system" in err and err.strip().splitlines() == [
        line for line in err.strip().splitlines() if line.startswith("daskglm: ")]


def test_cli_disk_full_while_writing_the_store(unequal, store, tmp_path, capsys, monkeypatch):
    """ENOSPC while Zarr writes a chunk of ``daskglm fit --overwrite``: one line, exit 2, old fit kept."""
    import errno

    from zarr.storage import LocalStore

    expected = _z(open_model(store))
    for i, (run, design) in enumerate(zip(unequal["runs"], unequal["designs"])):
        nib.save(run, tmp_path / f"run{i}.nii")
        design.to_csv(tmp_path / f"design{i}.csv")
    nib.save(unequal["mask"], tmp_path / "mask.nii")
    original_set = LocalStore.set

    async def full_disk(self, key, value, *args, **kwargs):
        if "/c/" in key:
            raise OSError(errno.ENOSPC, "No space left on device", key)
        return await original_set(self, key, value, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "set", full_disk)
    status = main(["fit", str(tmp_path / "run0.nii"), str(tmp_path / "run1.nii"), "--design",
                   str(tmp_path / "design0.csv"), str(tmp_path / "design1.csv"), "--mask",
                   str(tmp_path / "mask.nii"), "--noise-model", "ar1", "-o", str(store), "--overwrite",
                   "--no-progress"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert status == 2 and "No space left on device" in err and "Traceback" not in err
    assert [line for line in err.splitlines() if not line.startswith("daskglm: warning:")] == [
        line for line in err.splitlines() if line.startswith("daskglm: error: ")], err
    assert err.count("daskglm: error: ") == 1
    np.testing.assert_array_equal(_z(open_model(store)), expected)


def test_check_writable_probes_for_real(tmp_path):
    from daskglm.cli.runtime import check_writable

    check_writable(tmp_path / "new" / "fit.zarr", directory=True)
    assert not any(p.name.startswith(".daskglm-probe") for p in tmp_path.iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        check_writable(blocker / "fit.zarr", directory=True)



def test_an_unsupported_nilearn_in_a_command_is_one_line_exit_2(capsys):
    """NilearnVersionError is a user-facing error of every command (USER_ERRORS): one line, no traceback."""
    import argparse

    from daskglm.cli.runtime import USER_ERRORS, command
    from daskglm.errors import NilearnVersionError

    assert NilearnVersionError in USER_ERRORS

    @command()
    def handler(args):
        raise NilearnVersionError("daskglm needs nilearn>=0.14.1,<0.15 ... but nilearn 0.12.0 is installed")

    assert handler(argparse.Namespace(scheduler=None)) == 2
    err = capsys.readouterr().err
    assert err == "daskglm: error: daskglm needs nilearn>=0.14.1,<0.15 ... but nilearn 0.12.0 is installed\n"
    with pytest.raises(NilearnVersionError):
        handler(argparse.Namespace(scheduler=None, traceback=True))


def test_the_command_line_with_an_unsupported_nilearn_says_so_in_one_line(tmp_path):
    """``daskglm ...`` under another nilearn: one ``daskglm: error:`` line, exit 2 (not an import traceback)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    code = ("import sys\nimport nilearn\nnilearn.__version__ = '0.12.0'\nfrom daskglm.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    args = ["fit", "run.nii", "--t-r", "2", "-o", str(tmp_path / "fit.zarr")]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "daskglm: error: daskglm needs nilearn>=0.14.1,<0.15 (it calls nilearn helpers that change between "
        "minor releases) but nilearn 0.12.0 is installed; run: pip install 'nilearn>=0.14.1,<0.15'"]
    traced = subprocess.run([sys.executable, "-c", code, *args, "--traceback"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, check=False)
    assert traced.returncode == 1 and "Traceback" in traced.stderr
