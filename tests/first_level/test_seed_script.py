"""The seed example, run as a script with only the FirstLevelModel import changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from tests._reference import assert_maps_close

SCRIPT = Path(__file__).parent / "scripts" / "seed_two_runs.py"
CONTRASTS = (
    "SStSSp_minus_DStDSp", "DStDSp_minus_SStSSp", "DSt_minus_SSt", "DSp_minus_SSp",
    "DSt_minus_SSt_for_DSp", "DSp_minus_SSp_for_DSt", "Deactivation", "Effects_of_interest",
)


def _run(engine: str, data_dir: Path, out: Path) -> Path:
    subprocess.run([sys.executable, str(SCRIPT), engine, str(data_dir), str(out)], check=True,
                   capture_output=True, text=True)
    return out / "results" / "plot_two_runs_model"


def test_seed_script_gives_nilearns_maps(fiac_small, tmp_path):
    data_dir = Path(fiac_small["func1"]).parent
    ours = _run("daskglm", data_dir, tmp_path / "daskglm")
    theirs = _run("nilearn", data_dir, tmp_path / "nilearn")
    mask = nib.load(fiac_small["mask"]).get_fdata() > 0
    for name in CONTRASTS:
        a = nib.load(ours / f"{name}_z_map.nii.gz")
        b = nib.load(theirs / f"{name}_z_map.nii.gz")
        rtol = 1e-4 if name == "Effects_of_interest" else 0.0
        assert_maps_close(a, b, mask, name, rtol=rtol)
    assert_maps_close(nib.load(ours / "fixed_fx_stat.nii.gz"), nib.load(theirs / "fixed_fx_stat.nii.gz"),
                      mask, "fixed effects stat")
    report = (ours / "report.html").read_text()
    assert all(name in report for name in CONTRASTS)
    assert np.isfinite(nib.load(ours / "DSt_minus_SSt_z_map.nii.gz").get_fdata()).all()
