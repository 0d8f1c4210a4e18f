"""The HTML report rendered by a real headless Chromium (Debian's ``chromium``).

Chromium is driven from the command line: ``--dump-dom`` after the load event
of a copy of the report with a probe script injected (which records resource
and script errors and, per contrast section and image, whether it is rendered,
visible and decoded), ``--enable-logging=stderr`` to catch console messages
(the report has no script, so any console message is a problem), and
``--screenshot`` for a picture saved in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from daskglm import FirstLevelModel
from tests.conftest import load_named_designs

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]

PROBE = """<script>
window.__probeErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target || {};
  window.__probeErrors.push(e.message || ('failed to load ' + (t.tagName || '?') + ' ' + String(t.src || '').slice(0, 40)));
}, true);
window.addEventListener('load', function () {
  function shown(el) {
    var r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none' && s.opacity !== '0';
  }
  var out = {errors: window.__probeErrors, sections: [], images: []};
  document.querySelectorAll('article.contrast').forEach(function (a) {
    out.sections.push({id: a.id, title: a.querySelector('h3').textContent, shown: shown(a),
                       images: a.querySelectorAll('img').length, tables: a.querySelectorAll('table').length});
  });
  document.querySelectorAll('img').forEach(function (img) {
    out.images.push({alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth, shown: shown(img)});
  });
  var pre = document.createElement('pre');
  pre.id = 'daskglm-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def run_chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def console_messages(stderr: str) -> list[str]:
    return re.findall(r":CONSOLE[^\]]*\] (.*)", stderr)


def probe_page(tmp_path: Path, html_text: str) -> tuple[dict, list[str]]:
    """Load a copy of the page with the probe; return its findings and the console messages."""
    page = tmp_path / "probed.html"
    page.write_text(html_text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    result = run_chromium(tmp_path, page.as_uri(), "--virtual-time-budget=10000", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r'<pre id="daskglm-probe">(.*?)</pre>', result.stdout, re.S)
    assert match, "the probe did not run: " + result.stderr[-2000:]
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&")), \
        console_messages(result.stderr)


@pytest.fixture(scope="module")
def report_file(fiac_small, tmp_path_factory):
    designs = load_named_designs(fiac_small)
    model = FirstLevelModel(mask_img=fiac_small["mask"]).fit(
        [fiac_small["func1"], fiac_small["func2"]], design_matrices=designs)
    contrasts = {"DSt_minus_SSt": [[-1, -1, 1, 1]], "Effects_of_interest": np.eye(designs[0].shape[1])[:5]}
    path = tmp_path_factory.mktemp("browser") / "report.html"
    model.generate_report(contrasts, title="Browser test").save_as_html(path)
    return path


def test_report_renders_without_errors_and_everything_visible(report_file, tmp_path):
    probe, console = probe_page(tmp_path, report_file.read_text(encoding="utf-8"))
    assert console == []
    assert probe["errors"] == []
    assert [s["id"] for s in probe["sections"]] == ["c-DSt_minus_SSt", "c-Effects_of_interest"]
    for section in probe["sections"]:
        assert section["shown"], section
        assert section["images"] == 2 and section["tables"] == 1, section
    assert len(probe["images"]) == 4 + 2 * 2
    for image in probe["images"]:
        assert image["complete"] and image["naturalWidth"] > 0 and image["shown"], image


def test_probe_catches_broken_pages(tmp_path):
    """Negative control: the checks above do fail on a broken page."""
    broken = ('<!DOCTYPE html><html><head></head><body><article class="contrast" id="c-x" '
              'style="display:none"><h3>x</h3><img alt="bad" src="data:image/png;base64,AAAA">'
              '</article><script>console.error("boom"); undefinedFunction();</script></body></html>')
    probe, console = probe_page(tmp_path, broken)
    assert any("boom" in m for m in console)
    assert any("undefinedFunction" in m for m in console)
    assert probe["sections"][0]["shown"] is False
    assert probe["images"][0]["naturalWidth"] == 0
    assert probe["errors"]  # the image failed to decode


def test_report_screenshot(report_file, tmp_path):
    shot = tmp_path / "report.png"
    result = run_chromium(tmp_path, report_file.as_uri(), "--window-size=1280,2400",
                          "--virtual-time-budget=10000", f"--screenshot={shot}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr) == []
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2400, 1280)
    # the sidebar is dark, the page light, and the brain plots black: a rendered page, not blank
    assert pixels[:, :100].mean() < 0.3 and pixels[:, 300:].mean() > 0.5
    assert pixels.std() > 0.1


# ------------------------------------------- the demo report and a real-data-like CLI report, looked at
ARTIFACTS = Path(__file__).parents[1] / "artifacts"

SCREEN_PROBE = PROBE.replace(
    "out.images.push({alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth, shown: shown(img)});",
    "var r = img.getBoundingClientRect();"
    "out.images.push({alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth, shown: shown(img),"
    " rect: [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]});")


def screenshot_with_layout(tmp_path: Path, html_path: Path, name: str, height: int) -> tuple[dict, np.ndarray]:
    """Screenshot a report (kept in tests/artifacts/, path printed) and where each image is on it."""
    from matplotlib.image import imread

    probed = tmp_path / f"{name}_probed.html"
    probed.write_text(html_path.read_text(encoding="utf-8").replace("<head>", "<head>" + SCREEN_PROBE, 1),
                      encoding="utf-8")
    size = f"--window-size=1280,{height}"
    result = run_chromium(tmp_path, probed.as_uri(), size, "--virtual-time-budget=10000", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    probe = json.loads(re.search(r'<pre id="daskglm-probe">(.*?)</pre>', result.stdout, re.S).group(1)
                       .replace("&quot;", '"').replace("&amp;", "&"))
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    result = run_chromium(tmp_path, html_path.as_uri(), size, "--virtual-time-budget=10000",
                          f"--screenshot={shot}")
    assert result.returncode == 0 and console_messages(result.stderr) == []
    print(f"screenshot of the {name} report: {shot}")
    return probe, imread(shot)[..., :3]


def image_pixels(pixels: np.ndarray, image: dict) -> np.ndarray:
    left, top, width, height = (int(round(v)) for v in image["rect"])
    assert top + height <= pixels.shape[0], "the page is longer than the screenshot"
    return pixels[top:top + height, left:left + width]


def saturated(pixels: np.ndarray) -> np.ndarray:
    return (pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.25


def blue(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 2] > pixels[..., 0] + 0.2) & (pixels[..., 2] > 0.3)


def check_common(probe: dict, pixels: np.ndarray) -> dict:
    assert probe["errors"] == []
    images = {img["alt"]: img for img in probe["images"]}
    for img in probe["images"]:
        assert img["complete"] and img["naturalWidth"] > 0 and img["shown"], img
    mask = image_pixels(pixels, images["Analysis mask"])
    # the mask is drawn in each of the three thirds of its panel (sagittal, coronal, axial)
    thirds = np.array_split(mask[:, : int(mask.shape[1] * 0.98)], 3, axis=1)
    for part in thirds:
        assert saturated(part).mean() > 0.05, "a cut of the mask panel is empty"
    return images


def test_demo_report_in_chromium(tmp_path):
    from daskglm.cli.demo import run_demo

    result = run_demo(tmp_path / "demo", shape=(18, 22, 18), n_scans=64, verbose=False)
    probe, pixels = screenshot_with_layout(tmp_path, Path(result["report"]), "demo_report", 9000)
    images = check_common(probe, pixels)
    stat_maps = [img for alt, img in images.items() if alt.startswith("Stat map of")]
    assert len(stat_maps) == 8
    for img in stat_maps:
        region = image_pixels(pixels, img)
        # anatomy (the mean image, grey) behind the maps, and the map itself in colour
        grey = (region.max(axis=-1) - region.min(axis=-1) < 0.05) & (region.mean(axis=-1) > 0.2)
        assert grey.mean() > 0.1 and saturated(region).sum() > 100, img["alt"]


def test_real_data_like_cli_report_in_chromium(fiac_small, tmp_path, capsys):
    """A fit with events through the CLI, reported from its store: one-sided maps, glass brains,
    a contrast with no survivor, anatomy from the store's mean image."""
    from daskglm.cli import main

    store = tmp_path / "fit.zarr"
    assert main(["fit", fiac_small["func1"], fiac_small["func2"], "--events", fiac_small["events1"],
                 fiac_small["events2"], "--t-r", "2.5", "--smoothing-fwhm", "5", "-o", str(store)]) == 0
    contrasts = tmp_path / "contrasts.json"
    sentence = "`DSt-DSp` + `DSt-SSp` - `SSt-SSp` - `SSt-DSp`"
    contrasts.write_text(json.dumps({"sentence": sentence, "none": f"-({sentence})"}))
    html_path = tmp_path / "report.html"
    code = main(["report", str(store), "-f", str(contrasts), "--glass-brain", "--height-control",
                 "bonferroni", "--alpha", "0.05", "-o", str(html_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "must not exceed" not in captured.err
    probe, pixels = screenshot_with_layout(tmp_path, html_path, "cli_report", 6000)
    images = check_common(probe, pixels)
    stat = image_pixels(pixels, images["Stat map of sentence"])
    glass = image_pixels(pixels, images["Glass brain of sentence"])
    for region in (stat, glass):  # one-sided: warm colours only, no blue anywhere
        assert saturated(region).sum() > 100 and blue(region).sum() == 0
    grey = (stat.max(axis=-1) - stat.min(axis=-1) < 0.05) & (stat.mean(axis=-1) > 0.2)
    assert grey.mean() > 0.1, "no anatomy behind the stat map"
    empty = [alt for alt in images if alt.startswith("Stat map of none")]
    assert empty == ["Stat map of none: no voxel survives the threshold"]
    assert images[empty[0]]["rect"][3] < 200  # a line of text, not an empty frame
