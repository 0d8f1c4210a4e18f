"""Contents of the HTML report (``FirstLevelModel.generate_report``) and cluster tables from stores.

The report rendered in a real browser is in test_report_browser.
"""

from __future__ import annotations

import base64
import html
import re
from html.parser import HTMLParser

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm import FirstLevelModel, open_model
from daskglm.model import NotFittedError
from daskglm.reporting import GLMReport, make_glm_report, normalize_contrasts
from daskglm.reporting.tables import cluster_table_from_store
from daskglm.thresholding import get_clusters_table, threshold_stats_img
from tests.conftest import load_named_designs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted(fiac_small):
    model = FirstLevelModel(mask_img=fiac_small["mask"])
    return model.fit([fiac_small["func1"], fiac_small["func2"]],
                     design_matrices=load_named_designs(fiac_small))


@pytest.fixture(scope="module")
def contrasts(fitted):
    return {
        "DSt_minus_SSt": np.array([[-1, -1, 1, 1]]),
        "FirstSt": "FirstSt",
        "Effects_of_interest": np.eye(fitted.design_matrices_[0].shape[1])[:5],
    }


@pytest.fixture(scope="module")
def report_html(fitted, contrasts):
    report = fitted.generate_report(contrasts, title="Test <report>", height_control="fpr",
                                    alpha=0.001, cluster_threshold=2)
    assert isinstance(report, GLMReport)
    return report.get_standalone()


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r'(?=<article class="contrast" id=")', text)
    out = {}
    for part in parts[1:]:
        slug = re.match(r'<article class="contrast" id="([^"]+)"', part).group(1)
        out[slug] = part.split("</article>")[0]
    return out


def test_report_has_model_mask_design_and_whitening(report_html, fitted):
    assert "<title>Test &lt;report&gt;</title>" in report_html
    for section in ("model", "mask", "design", "whitening", "contrasts"):
        assert f'<section id="{section}">' in report_html
    for name in fitted.get_params():
        assert f"<th>{name}</th>" in report_html
    assert 'alt="Analysis mask"' in report_html
    assert 'alt="Design matrix of run 1"' in report_html
    assert 'alt="Design matrix of run 2"' in report_html
    assert 'alt="Histogram of AR(1) coefficients"' in report_html
    assert "fpr &lt; 0.001" in report_html and "&ge; 2 voxels" in report_html


def test_report_section_per_contrast(report_html, contrasts):
    sections = _sections(report_html)
    assert list(sections) == ["c-DSt_minus_SSt", "c-FirstSt", "c-Effects_of_interest"]
    for name, body in zip(contrasts, sections.values()):
        assert f"<h3>{name}</h3>" in body
        assert f'alt="Contrast matrix of {name}, all runs"' in body
        assert f'alt="Stat map of {name}"' in body
        assert f'href="#c-{name}"' in report_html  # navigation link


def test_report_images_embedded_and_self_contained(report_html):
    sources = re.findall(r'<img [^>]*src="([^"]+)"', report_html)
    assert len(sources) == 4 + 2 * 3  # mask, 2 designs, AR histogram; per contrast matrix + map
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    assert not re.search(r'(src|href)="(https?:)?//', report_html)
    assert "<script" not in report_html and "<link" not in report_html


def test_report_cluster_tables_find_the_simulated_regions(report_html, fitted, fiac_small):
    sections = _sections(report_html)
    truth = nib.load(fiac_small["ground_truth"]["sentence_repetition"])
    centre = nib.affines.apply_affine(truth.affine, np.argwhere(np.asarray(truth.dataobj) > 0).mean(0))
    tables = _tables(sections["c-DSt_minus_SSt"])
    assert len(tables) == 1
    table = tables[0]
    assert list(table.columns) == ["Cluster ID", "X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"]
    peak = table.iloc[0][["X", "Y", "Z"]].to_numpy(float)
    assert np.linalg.norm(peak - centre) < 10.0
    assert float(table.iloc[0]["Peak Stat"]) > 5
    f_table = _tables(sections["c-Effects_of_interest"])[0]
    assert (f_table["Cluster ID"].astype(str).str.isdigit()).sum() >= 3  # all three regions


class _TableParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None


def _tables(fragment: str) -> list[pd.DataFrame]:
    """The HTML tables of a fragment, as DataFrames (no lxml needed)."""
    parser = _TableParser()
    parser.feed(fragment)
    return [pd.DataFrame(rows[1:], columns=rows[0]) for rows in parser.tables]


def test_report_escapes_names(fitted):
    text = make_glm_report(fitted, {"<b>x</b>": [1, 0, 0, 0]}, glass_brain=False).get_standalone()
    assert "<b>x</b>" not in text and html.escape("<b>x</b>") in text


@pytest.mark.parametrize("contrasts, names", [
    ("FirstSt", ["FirstSt"]),
    (["FirstSt", "DSt-DSp"], ["FirstSt", "DSt-DSp"]),
    ([1, 0, -1], ["[1, 0, -1]"]),
    (np.array([[1, 0], [0, 1]]), ["[[1, 0], [0, 1]]"]),
    ([np.array([1, 0]), "FirstSt"], ["[1, 0]", "FirstSt"]),
])
def test_normalize_contrasts(contrasts, names):
    assert list(normalize_contrasts(contrasts)) == names


@pytest.mark.parametrize("bad, error", [(None, ValueError), ({}, ValueError), (3.5, TypeError)])
def test_normalize_contrasts_errors(bad, error):
    with pytest.raises(error):
        normalize_contrasts(bad)


def test_report_from_store_with_string_contrast(fitted, tmp_path):
    fitted.to_zarr(tmp_path / "fit.zarr")
    model = open_model(tmp_path / "fit.zarr")
    report = model.generate_report("FirstSt", bg_img=None, height_control=None, threshold=3.0,
                                   glass_brain=True)
    text = report.get_standalone()
    assert list(_sections(text)) == ["c-FirstSt"]
    assert 'alt="Glass brain of FirstSt"' in text
    path = report.save_as_html(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == text
    assert path.endswith("report.html")
    iframe = report._repr_html_()
    assert iframe.startswith("<iframe srcdoc=") and "&lt;!DOCTYPE html&gt;" in iframe


def test_report_errors(fitted, tmp_path):
    with pytest.raises(NotFittedError):
        FirstLevelModel().generate_report({"a": [1]})
    with pytest.raises(ValueError, match="height_control"):
        fitted.generate_report("FirstSt", height_control="holm")
    with pytest.raises(ValueError, match="not valid"):
        fitted.generate_report("NoSuchColumn + 1")
    report = GLMReport("<html></html>")
    with pytest.raises(FileNotFoundError):
        report.save_as_html(tmp_path / "missing" / "r.html")


# ------------------------------------------------------ cluster tables from stores
@pytest.fixture(scope="module")
def stored_fit(fiac_small, tmp_path_factory):
    designs = load_named_designs(fiac_small)
    model = FirstLevelModel(mask_img=fiac_small["mask"]).fit(
        [fiac_small["func1"], fiac_small["func2"]], design_matrices=designs)
    store = tmp_path_factory.mktemp("thr") / "fit.zarr"
    model.to_zarr(store)
    return model, store


def test_cluster_table_from_store_matches_in_memory(stored_fit, fiac_small):
    model, store = stored_fit
    contrast = [-1, -1, 1, 1]
    lazy = cluster_table_from_store(store, contrast, height_control="fpr", compute=False)
    assert hasattr(lazy, "compute") and not isinstance(lazy, pd.DataFrame)
    table = lazy.compute()
    z = model.compute_contrast(contrast)
    _, threshold = threshold_stats_img(z, model.mask_img_, height_control="fpr", two_sided=False)
    expected = get_clusters_table(z, threshold)
    assert table.attrs["threshold"] == pytest.approx(threshold)
    pd.testing.assert_frame_equal(table.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_dtype=False, atol=1e-6)
    # the strongest cluster is the simulated "sentence repetition" region
    truth = nib.load(fiac_small["ground_truth"]["sentence_repetition"])
    centre = nib.affines.apply_affine(truth.affine, np.argwhere(np.asarray(truth.dataobj) > 0).mean(0))
    peak = table.iloc[0][["X", "Y", "Z"]].to_numpy(float)
    assert np.linalg.norm(peak - centre) < 10.0


def test_cluster_table_from_missing_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cluster_table_from_store(tmp_path / "nope.zarr", [1, 0])
