"""Code in group-level contrast strings is refused, never executed (API and ``daskglm group``).

Second-level contrasts, first-level contrasts of a study store and of
nilearn's fitted first-level models, reports and permutations; string
contrasts still work and reports keep their names.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm.cli import main
from daskglm.errors import ContrastError
from tests._unequal import AFFINE

EVIL_GROUP = "intercept.to_csv('PWNED')"


@pytest.fixture(scope="module")
def group_study(unequal) -> Path:
    """A study store of three one-run subjects (the 60-scan run, shifted per subject)."""
    from daskglm import fit_subjects

    run, design = unequal["runs"][0], unequal["designs"][0]
    subjects = {f"0{i}": {"run_imgs": [nib.Nifti1Image(np.asarray(run.dataobj) + i, AFFINE)],
                          "design_matrices": [design]} for i in range(1, 4)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_subjects(subjects, unequal["root"] / "study.zarr", progress=False, raise_on_error=True,
                              model_params={"mask_img": unequal["mask"], "noise_model": "ols"})
    return Path(result.store)


def test_group_contrast_strings_execute_nothing(group_study, unequal, tmp_path, monkeypatch):
    from nilearn.glm.first_level import FirstLevelModel as NilearnFLM

    from daskglm import SecondLevelModel, non_parametric_inference

    monkeypatch.chdir(tmp_path)
    model = SecondLevelModel(mask_img=unequal["mask"]).fit(str(group_study))
    with pytest.raises(ContrastError, match="not valid"):
        model.compute_contrast(EVIL_GROUP, first_level_contrast="a")
    with pytest.raises(ContrastError, match="not valid"):
        model.generate_report(contrasts=[EVIL_GROUP], first_level_contrast="a")
    with pytest.raises(ContrastError, match="not valid"):
        non_parametric_inference(str(group_study), design_matrix=pd.DataFrame({"intercept": [1.0] * 3}),
                                 second_level_contrast=EVIL_GROUP, first_level_contrast="a",
                                 mask=unequal["mask"], n_perm=5)
    with warnings.catch_warnings():  # nilearn's first-level models given to daskglm's group model
        warnings.simplefilter("ignore")
        nl_models = [NilearnFLM(mask_img=unequal["mask"], noise_model="ols", subject_label=f"sub-{i}").fit(
            unequal["runs"][0], design_matrices=unequal["designs"][0]) for i in range(1, 3)]
    with pytest.raises(ContrastError, match="not valid"):
        SecondLevelModel(mask_img=unequal["mask"]).fit(nl_models).compute_contrast(
            first_level_contrast="a.to_csv('PWNED')")
    assert not (tmp_path / "PWNED").exists()
    # string contrasts still work, and the report keeps their names
    z = model.compute_contrast("intercept", first_level_contrast="a - b")
    assert np.allclose(z.get_fdata(), model.compute_contrast([1.0], first_level_contrast="a - b").get_fdata())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn's cut warnings on a 6x5x4 grid
        html = str(model.generate_report(contrasts=["intercept"], first_level_contrast="a",
                                         height_control=None, threshold=2.0))
    assert "intercept" in html and model._report_content["contrasts"] == ["intercept"]


def test_cli_group_contrast_with_code(group_study, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["group", str(group_study), "--first-level-contrast", "a", "--contrast", EVIL_GROUP,
                 "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not valid" in err and "Traceback" not in err
    assert not (tmp_path / "PWNED").exists() and not out.exists()

