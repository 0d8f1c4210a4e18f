"""The repetition time's one home (``daskglm.io.timing``): the same checks and messages on every route."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

from daskglm.errors import DesignError
from daskglm.io.dataarray import open_run
from daskglm.io.timing import (
    MAX_T_R,
    check_runs_t_r,
    check_t_r,
    check_t_r_in_seconds,
    header_t_r,
    reconcile_t_r,
)


@pytest.mark.parametrize("t_r", [None, 2, 2.5, np.float32(0.8), np.int64(3)])
def test_numbers_pass(t_r):
    check_t_r(t_r)


@pytest.mark.parametrize(("t_r", "error", "fragment"), [
    ("2", TypeError, "'t_r' must be of type"), (True, TypeError, "'t_r' must be of type"),
    ([2.0], TypeError, "'t_r' must be of type"),
    (0, DesignError, "'t_r' must be positive"), (-2.0, DesignError, "'t_r' must be positive"),
    (np.nan, DesignError, "finite"), (np.inf, DesignError, "finite"),
])
def test_values_refused_as_nilearn(t_r, error, fragment):
    with pytest.raises(error, match=fragment):
        check_t_r(t_r)
    with pytest.raises(error, match=fragment):  # the same on the open_run route
        reconcile_t_r(t_r, 2.0, "run.nii")


def test_milliseconds_are_named():
    check_t_r_in_seconds(MAX_T_R, 100)
    with pytest.raises(DesignError, match=r"t_r=2000 s gives a run of 55.6 hours; is it in milliseconds\? .* "
                                          r"t_r=2 for 100 scans of 2000 ms"):
        check_t_r_in_seconds(2000, 100)


def _img(t_r: float, unit: str = "sec") -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4))
    img.header.set_zooms((1.0, 1.0, 1.0, t_r))
    img.header.set_xyzt_units("mm", unit)
    return img


def test_header_t_r_in_its_unit():
    assert header_t_r(_img(2.0).header) == 2.0
    assert header_t_r(_img(2000.0, "msec").header) == pytest.approx(2.0)
    assert header_t_r(_img(0.0).header) is None


def test_given_against_header():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reconcile_t_r(None, 2.0, "run") == 2.0
        assert reconcile_t_r(2, 2.001, "run") == 2.0  # within 0.1 %
    with pytest.warns(UserWarning, match=r"--t-r 4 differs from the repetition time in the header of run \(2 s\); "
                                         "the design uses 4 s"):
        assert reconcile_t_r(4, 2.0, "run", given="--t-r ", used_by="the design") == 4.0


def test_open_run_and_run_files_use_the_same_checks(tmp_path):
    path = tmp_path / "run.nii"
    nib.save(_img(2.0), path)
    with pytest.raises(DesignError, match="'t_r' must be positive"):
        open_run(str(path), t_r=-1)
    with pytest.warns(UserWarning, match="differs from the repetition time in the header"):
        open_run(str(path), t_r=3.0)
    with pytest.warns(UserWarning, match=str(path)):
        check_runs_t_r([str(path), _img(3.0)], 3.0)  # images are skipped: no file header to read
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_runs_t_r([str(path)], None)
        check_runs_t_r([str(path)], 2.0)
