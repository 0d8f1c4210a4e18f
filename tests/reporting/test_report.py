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
from daskglm.first_level.model import NotFittedError
from daskglm.reporting import GLMReport, make_glm_report, normalize_contrasts
from daskglm.reporting.tables import cluster_table_from_store
from daskglm.reporting.thresholding import get_clusters_table, threshold_stats_img
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
        assert f'alt="Stat map of {name}' in body  # (": no voxel survives the threshold" when empty)
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


# ------------------------------------------------------ what a person sees (pixels of the figures)
def _rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float) / 255


def _axes_pixels(fig, ax) -> np.ndarray:
    """The rendered pixels inside ``ax`` (rows from the top, as in the buffer)."""
    rgb = _rgb(fig)
    box = ax.get_window_extent()
    height = rgb.shape[0]
    rows = slice(int(height - box.y1) + 2, int(height - box.y0) - 2)
    return rgb[rows, int(box.x0) + 2:int(box.x1) - 2]


def _coloured(pixels: np.ndarray) -> np.ndarray:
    """Saturated pixels (not black, white or grey)."""
    return (pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.25


def _blue(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 2] > pixels[..., 0] + 0.2) & (pixels[..., 2] > 0.3)


def test_mask_plot_shows_the_mask_in_every_cut(fiac_small):
    """The FIAC-like data are in scanner space (0 mm is outside the image): cuts must follow the mask."""
    from daskglm.reporting.plotting import mask_cut_coords, plot_mask

    mask = nib.load(fiac_small["mask"])
    assert not np.allclose(mask.affine[:3, 3], 0)
    cuts = mask_cut_coords(mask)
    ijk = np.round(np.linalg.solve(mask.affine, [*cuts, 1])[:3]).astype(int)
    assert np.asarray(mask.dataobj)[tuple(ijk)] != 0
    fig = plot_mask(mask)
    axes = [ax for ax in fig.axes if ax.images and ax.get_position().width < 0.9]  # not the frame
    assert len(axes) == 3
    for ax in axes:
        pixels = _axes_pixels(fig, ax)
        assert _coloured(pixels).mean() > 0.05, "a mask cut is empty"


def test_empty_map_says_so_in_words_without_warnings(fitted):
    from daskglm.reporting.plotting import plot_glass_brain, plot_stat_map

    z = fitted.compute_contrast("FirstSt")
    too_high = float(np.abs(z.get_fdata()).max()) + 1
    with warnings_as_errors():
        for fig in (plot_stat_map(z, threshold=too_high, title="t"),
                    plot_stat_map(z, threshold=np.inf, title="t", two_sided=False),
                    plot_glass_brain(z, threshold=too_high, title="t")):
            texts = " ".join(t.get_text() for t in fig.texts)
            assert "No voxel survives the threshold" in texts
            assert not any(ax.images for ax in fig.axes)  # no black frame
            rgb = _rgb(fig)
            assert rgb.mean() > 0.9  # a white figure with text, not a black frame


def warnings_as_errors():
    import warnings

    manager = warnings.catch_warnings()
    manager.__enter__()
    warnings.simplefilter("error")
    return _Exit(manager)


class _Exit:
    def __init__(self, manager):
        self.manager = manager

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.manager.__exit__(*exc)
        return False


def test_one_sided_maps_use_a_one_sided_colour_map(fitted):
    from daskglm.reporting.plotting import plot_glass_brain, plot_stat_map

    z = fitted.compute_contrast("`DSt-DSp` + `DSt-SSp` - `SSt-SSp` - `SSt-DSp`")
    positive = nib.Nifti1Image(np.where(z.get_fdata() > 3, z.get_fdata(), 0).astype(np.float32), z.affine)
    assert (positive.get_fdata() > 3).sum() > 5
    for draw in (plot_stat_map, plot_glass_brain):
        one = _rgb(draw(positive, threshold=3.0, two_sided=False))
        assert _coloured(one).sum() > 50
        assert _blue(one).sum() == 0, f"{draw.__name__}: blue in a one-sided map"
    # negative control: a two-sided stat map of a map with negative values does draw blue
    negative = nib.Nifti1Image(-positive.get_fdata().astype(np.float32), z.affine)
    assert _blue(_rgb(plot_stat_map(negative, threshold=3.0, two_sided=True))).sum() > 20


def test_contrast_matrix_colour_bar_does_not_cover_labels(fitted):
    from daskglm.reporting.plotting import plot_contrast_matrix

    design = fitted.design_matrices_[0]
    fig = plot_contrast_matrix([-1, -1, 1, 1], design)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    matrix, bar = fig.axes[0], fig.axes[1]
    bar_box = bar.get_window_extent(renderer)
    labels = [t for t in matrix.get_xticklabels() if t.get_text()]
    assert labels[-1].get_text() == "constant"
    for label in labels:
        assert not label.get_window_extent(renderer).overlaps(bar_box), label.get_text()
    fig_box = fig.bbox
    assert bar_box.x1 <= fig_box.x1 and bar_box.y0 >= 0


def test_store_keeps_the_mean_image_and_the_report_uses_it(fitted, fiac_small, tmp_path):
    from daskglm.first_level.volumes import mean_image

    fitted.to_zarr(tmp_path / "fit.zarr")
    reopened = open_model(tmp_path / "fit.zarr")
    mean = mean_image(reopened)
    mask = np.asarray(nib.load(fiac_small["mask"]).dataobj) != 0
    expected = np.mean([nib.load(fiac_small[f"func{r}"]).get_fdata().mean(axis=3) for r in (1, 2)], axis=0)
    np.testing.assert_allclose(mean.get_fdata()[mask], expected[mask], rtol=1e-5)
    assert np.all(mean.get_fdata()[~mask] == 0)
    # the report of the reopened store draws its stat maps over that anatomy, not a crop on black
    text = reopened.generate_report({"FirstSt": "FirstSt", "none": "FirstSt"}, threshold=3.0,
                                    height_control=None).get_standalone()
    uri = re.search(r'<img class="brain" src="data:image/png;base64,([^"]+)" alt="Stat map of FirstSt"',
                    text).group(1)
    import io

    from matplotlib.image import imread

    pixels = imread(io.BytesIO(base64.b64decode(uri)))[..., :3]
    grey = (pixels.max(axis=-1) - pixels.min(axis=-1) < 0.05) & (pixels.mean(axis=-1) > 0.15)
    assert grey.mean() > 0.1, "no anatomy behind the stat map"


def test_report_says_when_no_voxel_survives(fitted, recwarn):
    text = fitted.generate_report({"FirstSt": "FirstSt"}, threshold=1e6, height_control=None,
                                  glass_brain=True).get_standalone()
    assert text.count("no voxel survives the threshold") == 1  # the stat map's alt text
    assert "No suprathreshold cluster" in text
    assert not [w for w in recwarn if "must not exceed" in str(w.message)]  # no leaked nilearn warning


def test_glass_brain_recentred_only_for_scanner_coordinates(fiac_small):
    from daskglm.reporting.report import _far_from_template

    scanner = nib.load(fiac_small["mask"])  # FIAC: the field of view is centred ~190 mm from 0 mm
    assert _far_from_template(scanner)
    centred = nib.Nifti1Image(np.zeros((61, 73, 61), np.uint8), np.array(
        [[-3.0, 0, 0, 90], [0, 3, 0, -126], [0, 0, 3, -72], [0, 0, 0, 1]]))  # MNI 3 mm
    assert not _far_from_template(centred)


def test_daskglm_report_with_defaults_is_quiet(fitted, tmp_path, capsys):
    """No false warning: no unused threshold (none given), no 'pass an expression' for an expression,
    no notice of nilearn's future default for the CLI's own 3.09."""
    from daskglm.cli import main

    store = tmp_path / "fit.zarr"
    fitted.to_zarr(store)
    for extra in ([], ["--height-control", "none"]):
        code = main(["report", str(store), "FirstSt", "-o", str(tmp_path / "r.html"), "--no-progress", *extra])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert "warning" not in captured.err, captured.err
    assert "Height control: z &gt; 3.09" in (tmp_path / "r.html").read_text()  # the CLI's default threshold
