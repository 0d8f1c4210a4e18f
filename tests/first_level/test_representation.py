"""How a model prints: as nilearn's ``FirstLevelModel`` with the same parameters."""

from __future__ import annotations

from nilearn.glm.first_level import FirstLevelModel as NilearnFirstLevelModel

from daskglm import FirstLevelModel


def test_repr_as_nilearn():
    params = {"t_r": 2.0, "noise_model": "ols", "smoothing_fwhm": 5, "drift_model": None}
    assert repr(FirstLevelModel(**params)) == repr(NilearnFirstLevelModel(**params))
    assert repr(FirstLevelModel()) == "FirstLevelModel()"

