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
