"""The repetition time and the runs' lengths, checked at fit (``glm.design.check_runs_and_t_r``).

``t_r`` of the wrong type or value fails with nilearn's exception types and
messages; a ``t_r`` in milliseconds and a one-volume run are refused by name.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from daskglm import FirstLevelModel
from daskglm.errors import DesignError
from tests._unequal import AFFINE, T_R, _events


def test_t_r_in_milliseconds_is_named(unequal):
    ev = _events(["a", "b"], 60, 1)
    with pytest.raises(DesignError, match=r"t_r=2000 s gives a run of .* hours; is it in milliseconds"):
        FirstLevelModel(t_r=2000, mask_img=unequal["mask"]).fit(unequal["runs"][0], events=ev)


@pytest.mark.parametrize(("t_r", "error", "fragment"), [
    ("2", TypeError, "'t_r' must be of type"), (True, TypeError, "'t_r' must be of type"),
    (0, ValueError, "'t_r' must be positive"), (-2.0, ValueError, "'t_r' must be positive"),
    (np.nan, ValueError, "finite"),
])
def test_t_r_types_and_values_as_nilearn(unequal, t_r, error, fragment):
    with pytest.raises(error, match=fragment):
        FirstLevelModel(t_r=t_r, mask_img=unequal["mask"]).fit(
            unequal["runs"][0], events=_events(["a"], 60, 1))


def test_one_volume_run_is_refused_by_name(unequal):
    one = nib.Nifti1Image(np.asarray(unequal["runs"][0].dataobj)[..., :1], AFFINE)
    with pytest.raises(DesignError, match=r"Run 1 .* 1 volume"):
        FirstLevelModel(t_r=T_R, mask_img=unequal["mask"]).fit(
            [unequal["runs"][0], one], events=[_events(["a"], 60, 1), _events(["a"], 1, 1)])

