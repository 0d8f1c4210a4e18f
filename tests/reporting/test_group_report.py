"""The group report (:mod:`daskglm.reporting.group_report`): contents, ``daskglm group``'s quiet run, Chromium.

The report of ``daskglm group`` on a six-subject study store with permutations
and TFCE is rendered by headless Chromium (the probe of test_report_browser:
no console message, every section and image shown and decoded); its
screenshot is kept in tests/artifacts/group_report.png.
"""

from __future__ import annotations

import re
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm import SecondLevelModel
from daskglm.data.fiac import make_fiac_like
from daskglm.group.permutation import non_parametric_inference
from daskglm.reporting.group_report import make_group_report
from daskglm.studies.subjects import fit_subjects
from tests.conftest import load_named_design
from tests.reporting.test_report_browser import (
    CHROMIUM,
    image_pixels,
    probe_page,
    saturated,
    screenshot_with_layout,
)


@pytest.fixture(scope="module")
def group_maps():
    rng = np.random.default_rng(4)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    mask = np.zeros((9, 10, 8), np.uint8)
    mask[1:8, 1:9, 1:7] = 1
    signal = np.zeros(mask.shape)
    signal[3:6, 3:7, 2:5] = 2.5
    maps = [nib.Nifti1Image((rng.standard_normal(mask.shape) + signal).astype("f4"), affine) for _ in range(8)]
    return maps, pd.DataFrame({"intercept": np.ones(8)}), nib.Nifti1Image(mask, affine)


def test_group_report_of_maps_with_permutation_results(group_maps):
    maps, design, mask = group_maps
    model = SecondLevelModel(mask_img=mask).fit(maps, design_matrix=design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        perm = non_parametric_inference(maps, design_matrix=design, mask=mask, n_perm=50, tfce=True,
                                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a quiet report
        page = make_group_report(model, "intercept", nonparametric=perm, height_control=None,
                                 threshold=3.0).get_standalone()
    for alt in ("Group mask", "Group design matrix", "Contrast matrix of intercept", "Stat map of intercept",
                "Voxel-level FWE (max t) map of intercept", "TFCE, FWE map of intercept"):
        assert f'alt="{alt}' in page, alt
    assert "Cluster size, FWE" not in page  # not computed: not drawn
    assert "the group mask (the inputs carry no anatomy)" in page
    # the parametric table's first peak is the z map's maximum (nilearn's z of the same model)
    z = model.compute_contrast("intercept").get_fdata()
    first_peak = re.search(r"<th>Peak Stat</th>.*?<td>1</td>(?:\s*<td>[^<]*</td>){3}\s*<td>([0-9.]+)</td>",
                           page, re.S)
    assert first_peak and float(first_peak.group(1)) == pytest.approx(z.max(), abs=0.006)
    # the FWE table's peaks are -log10 p(FWE) values, at most -log10(1 / (n_perm + 1))
    peaks = re.findall(r"<th>Peak -log10 p\(FWE\)</th>", page)
    assert len(peaks) == 2
    assert np.nanmax(perm["logp_max_t"].get_fdata()) <= np.log10(51) + 1e-9


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("group_report_study")
    subjects = {}
    for i in range(6):
        data = make_fiac_like(root / f"d{i}", shape=(9, 10, 9), n_scans=50, n_runs=1, seed=40 + i,
                              compress=False)
        subjects[f"{i + 1:02d}"] = {"run_imgs": [data["func1"]],
                                    "design_matrices": [load_named_design(data["design_matrix1"])]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_subjects(subjects, root / "study.zarr", model_params={"mask_img": data["mask"],
                                                                            "noise_model": "ols"},
                              progress=False, raise_on_error=True)
    return result.store


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_daskglm_group_report_is_quiet_and_renders_in_chromium(study, tmp_path, capsys):
    from daskglm.cli import main

    out = tmp_path / "group"
    code = main(["group", str(study), "--first-level-contrast", "FirstSt", "--permutations", "100", "--tfce",
                 "--cluster-threshold", "2.3", "-o", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    # one warning, true and actionable: 6 subjects have 2**6 distinct sign flips
    assert err.splitlines() == [
        "daskglm: warning: --permutations=100 exceeds the 2**6 = 64 distinct sign flips of 6 maps: random draws "
        "repeat some, and the data support no p-value below 1/64 = 0.0156 (the smallest reported, 1/101, is "
        "smaller). Use --permutations <= 64, or more subjects."]
    html_path = out / "report.html"
    probe, console = probe_page(tmp_path, html_path.read_text(encoding="utf-8"))
    assert console == [] and probe["errors"] == []
    (section,) = probe["sections"]
    assert section["title"] == "intercept" and section["shown"]
    assert section["images"] == 1 + 5 and section["tables"] >= 1  # contrast matrix; z and four FWE maps
    assert html_path.read_text(encoding="utf-8").count("<h4>Cluster table (") == 5  # a table or "no cluster"
    for image in probe["images"]:
        assert image["complete"] and image["naturalWidth"] > 0 and image["shown"], image
    probe, pixels = screenshot_with_layout(tmp_path, html_path, "group_report", 4200)
    images = {img["alt"]: img for img in probe["images"]}
    stat = image_pixels(pixels, next(img for alt, img in images.items() if alt.startswith("Stat map of")))
    grey = (stat.max(axis=-1) - stat.min(axis=-1) < 0.05) & (stat.mean(axis=-1) > 0.2)
    assert grey.mean() > 0.05, "no anatomy (the subjects' mean image) behind the map"
    assert saturated(stat).sum() > 100, "no map drawn"


def test_group_report_of_surface_maps():
    """SurfaceImage maps: drawn on their mesh, the mask told in vertices, quietly."""
    from nilearn.surface import PolyMesh, SurfaceImage

    from tests.reporting.test_nilearn_functions import _grid_mesh

    mesh = PolyMesh(left=_grid_mesh(8, -40.0), right=_grid_mesh(8, 20.0))
    rng = np.random.default_rng(2)
    effect = np.r_[np.full(20, 2.0), np.zeros(44)]
    maps = [SurfaceImage(mesh=mesh, data={p: effect + rng.standard_normal(64) for p in ("left", "right")})
            for _ in range(8)]
    design = pd.DataFrame({"intercept": np.ones(8)})
    model = SecondLevelModel().fit(maps, design_matrix=design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        perm = non_parametric_inference(maps, design_matrix=design, n_perm=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        page = make_group_report(model, "intercept", nonparametric={"logp_max_t": perm}, height_control=None,
                                 threshold=2.5).get_standalone()
    assert "128 vertices in" in page and "left: 64 of 64; right: 64 of 64" in page
    assert 'alt="Stat map of intercept"' in page and 'alt="Voxel-level FWE (max t) map of intercept' in page
    assert "<th>Hemisphere</th>" in page  # nilearn's surface cluster table
