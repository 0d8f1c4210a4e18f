"""BIDS derivatives of surface fits: GIfTI per hemisphere (as nilearn 0.14.1 writes them), CIFTI dscalar.

A ``SurfaceImage`` fit (fsaverage5) is written by ``save_bids_derivatives``
and by nilearn's ``save_glm_to_bids`` for the same data: the mask and map
files have the same names (``hemi-L`` / ``hemi-R``, ``den-10242``) and the
same values.  A CIFTI-2 fit writes ``.dscalar.nii`` maps over the input's
brain models, under the volume names with that extension.
"""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_fsaverage

from daskglm import FirstLevelModel
from daskglm.io.cifti import write_cifti_run
from daskglm.studies.bids.derivatives import derivative_filenames, save_bids_derivatives
from tests.space.test_cifti import brain_models
from tests.space.test_cifti import design as cifti_design
from tests.space.test_cifti import simulate as cifti_simulate
from tests.space.test_surface import T_R, events, surface_run

CONTRASTS = {"aMinusB": "a - b"}
RUN = "sub-01_task-x_space-fsaverage5_bold.func.gii"


@pytest.fixture(scope="module")
def surface_fit():
    img = surface_run(load_fsaverage("fsaverage5")["pial"], 1)
    return img, FirstLevelModel(t_r=T_R, noise_model="ols").fit(img, events=events(0))


def test_surface_derivatives_match_nilearns_files(surface_fit, tmp_path):
    from nilearn.glm import save_glm_to_bids
    from nilearn.glm.first_level import FirstLevelModel as NilearnFLM

    img, model = surface_fit
    written = save_bids_derivatives(model, tmp_path / "ours", CONTRASTS, run_names=[RUN])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnFLM(t_r=T_R, noise_model="ols", minimize_memory=False).fit(img, events=events(0))
        save_glm_to_bids(ref, CONTRASTS, out_dir=tmp_path / "nilearn", prefix="sub-01_task-x_space-fsaverage5")
    theirs = {p.name for p in (tmp_path / "nilearn" / "sub-01").glob("*.gii")
              if "errorts" not in p.name and "rsquared" not in p.name}  # nilearn's model-level maps
    ours = {p.name for p in (tmp_path / "ours" / "sub-01").glob("*.gii")}
    assert ours == theirs and len(ours) == 12  # mask + 5 maps, per hemisphere
    assert set(written["files"]) >= ours
    for name in ours:
        a = np.asarray(nib.load(tmp_path / "ours" / "sub-01" / name).agg_data())
        b = np.asarray(nib.load(tmp_path / "nilearn" / "sub-01" / name).agg_data())
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)
    mask = nib.load(tmp_path / "ours" / "sub-01" / "sub-01_task-x_hemi-L_space-fsaverage5_den-10242_mask.gii")
    assert mask.darrays[0].data.dtype == np.uint8


def test_cifti_derivatives_are_dense_scalars(tmp_path):
    bm = brain_models()
    X = cifti_design(0)
    Y = cifti_simulate(X, len(bm), 10)
    run = write_cifti_run(tmp_path / "sub-01_task-x_space-fsLR_bold.dtseries.nii", bm, len(X), 2.0,
                          lambda a, b: Y[:, a:b], dtype=np.float64)
    model = FirstLevelModel().fit(run, design_matrices=X)
    written = save_bids_derivatives(model, tmp_path / "out", CONTRASTS, run_names=[str(run)])
    volume = derivative_filenames([str(run)], CONTRASTS)
    assert written["mask"] == volume["mask"].replace(".nii.gz", ".dscalar.nii")
    folder = tmp_path / "out" / "sub-01"
    expected = model.compute_contrast("a - b", output_type="all")
    for output, name in written["maps"]["aMinusB"].items():
        assert name == volume["maps"]["aMinusB"][output].replace(".nii.gz", ".dscalar.nii")
        img = nib.load(folder / name)
        assert isinstance(img, nib.Cifti2Image) and img.header.get_axis(1) == bm
        np.testing.assert_array_equal(np.asarray(img.dataobj), np.asarray(expected[output].dataobj))
    mask = nib.load(folder / written["mask"])
    assert isinstance(mask, nib.Cifti2Image) and mask.header.get_axis(1) == bm
    pd.testing.assert_frame_equal(pd.read_csv(folder / written["designs"][0], sep="\t"),
                                  X.reset_index(drop=True), check_dtype=False)


def test_dataset_description_has_no_made_up_code_url(surface_fit, tmp_path):
    _, model = surface_fit
    save_bids_derivatives(model, tmp_path, CONTRASTS, run_names=[RUN])
    desc = json.loads((tmp_path / "dataset_description.json").read_text())
    assert all("CodeURL" not in g for g in desc["GeneratedBy"])
    assert desc["GeneratedBy"][0]["Name"] == "daskglm"
