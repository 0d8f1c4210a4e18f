"""Surface inputs at the group level: one clear error (nilearn 0.14.1 fits them; daskglm not yet).

``SecondLevelModel.fit`` and ``non_parametric_inference`` refuse
SurfaceImages, GIfTI and CIFTI maps (objects, paths, DataFrame rows) and
first-level models fitted on surfaces with a :class:`GroupInputError` that says
so, before anything is read (the paths here do not exist).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from nilearn.conftest import _make_surface_img
from nilearn.glm.first_level import FirstLevelModel as NilearnFLM

from daskglm import FirstLevelModel, SecondLevelModel, non_parametric_inference
from daskglm.errors import GroupInputError

MESSAGE = "Surface inputs are not supported at the group level yet"
DESIGN = pd.DataFrame({"intercept": np.ones(3)})


def _surface_models(kind):
    img = _make_surface_img(6)
    X = pd.DataFrame(np.c_[np.random.default_rng(0).normal(size=6), np.ones(6)], columns=["a", "constant"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = (FirstLevelModel() if kind == "daskglm" else NilearnFLM()).fit(img, design_matrices=X)
    model.subject_label = "01"
    return [model] * 3


INPUTS = {
    "list of SurfaceImage": lambda: [_make_surface_img(1) for _ in range(3)],
    "SurfaceImage": lambda: _make_surface_img(3),
    "Series of SurfaceImage": lambda: pd.Series([_make_surface_img(1) for _ in range(3)]),
    "GIfTI paths": lambda: [f"sub-0{i}_hemi-L.shape.gii" for i in range(3)],
    "CIFTI paths": lambda: [f"sub-0{i}_stat.dscalar.nii" for i in range(3)],
    "daskglm surface models": lambda: _surface_models("daskglm"),
    "nilearn surface models": lambda: _surface_models("nilearn"),
}


@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize("entry", ["model", "permutation"])
def test_surface_inputs_are_refused_clearly(name, entry):
    second_level_input = INPUTS[name]()
    design = None if "models" in name else DESIGN
    with pytest.raises(GroupInputError, match=MESSAGE) as info:
        if entry == "model":
            SecondLevelModel().fit(second_level_input, design_matrix=design)
        else:
            non_parametric_inference(second_level_input, design_matrix=design, n_perm=10,
                                     first_level_contrast="a" if "models" in name else None)
    assert "second_level_input" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_dataframe_of_surface_maps_is_refused_clearly():
    table = pd.DataFrame({"subject_label": ["01", "02", "03"], "map_name": "a",
                          "effects_map_path": [f"sub-0{i}.func.gii" for i in range(3)]})
    with pytest.raises(GroupInputError, match=MESSAGE):
        SecondLevelModel().fit(table)
