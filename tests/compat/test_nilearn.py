"""nilearn behind one door: the supported range, the one-line error for another nilearn, the wrappers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nilearn
import pytest

from daskglm.compat import nilearn as compat
from daskglm.errors import NilearnVersionError

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _nilearn_requirements(requirements: list[str]) -> list[str]:
    return [r.replace(" ", "") for r in requirements if re.match(r"nilearn\s*([<>=!~,;\[]|$)", r)]


def test_pyproject_requirement_is_the_range_compat_checks():
    project = _pyproject()["project"]
    assert _nilearn_requirements(project["dependencies"]) == [compat.NILEARN_REQUIREMENT]
    assert compat.NILEARN_REQUIREMENT == f"nilearn>={compat.NILEARN_MIN_VERSION},<{compat.NILEARN_MAX_VERSION}"
    # the version the test extra pins (the one CI runs) is inside the range
    (pinned,) = _nilearn_requirements(project["optional-dependencies"]["test"])
    assert pinned.startswith("nilearn==")
    compat.check_nilearn_version(pinned.removeprefix("nilearn=="))


def test_installed_nilearn_is_supported():
    compat.check_nilearn_version()


#: Pre-releases and development builds as PEP 440 orders them: ``0.14.2.dev3`` and ``0.14.2rc1`` come
#: after 0.14.1 (in), ``0.14.1.dev12`` and ``0.14.1rc1`` before it (out), ``0.15.0rc1`` before 0.15
#: but a pre-release of the excluded release (out, as ``<0.15`` means to pip).
INSIDE = ["0.14.1", "0.14.2", "0.14.10", "0.14.2.dev3", "0.14.2rc1", "0.14.1.post1", "0.14.1+local.1"]
OUTSIDE = ["0.11.1", "0.12.0", "0.14.0", "0.14.1.dev12+g3f2a1b", "0.14.1rc1", "0.15.0", "0.15.0rc1",
           "0.15.0.dev4", "1.0", "unknown", ""]


@pytest.mark.parametrize("version", INSIDE)
def test_versions_inside_the_range_pass(version):
    compat.check_nilearn_version(version)


def test_versions_are_judged_as_pip_judges_the_requirement():
    """pip accepts an installed version when the requirement's specifier contains it, pre-releases allowed."""
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion, Version

    specifier = Requirement(compat.NILEARN_REQUIREMENT).specifier
    assert specifier == compat.NILEARN_SPECIFIER
    for version in INSIDE + OUTSIDE:
        try:
            pip_accepts = specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            pip_accepts = False
        try:
            compat.check_nilearn_version(version)
            ours = True
        except NilearnVersionError:
            ours = False
        assert ours == pip_accepts == (version in INSIDE), version


def test_packaging_is_a_declared_dependency():
    """The check uses ``packaging`` (a nilearn dependency too): daskglm declares it itself."""
    deps = [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] for r in _pyproject()["project"]["dependencies"]]
    assert "packaging" in deps


@pytest.mark.parametrize("version", OUTSIDE)
def test_other_versions_fail_with_one_line(version, monkeypatch):
    monkeypatch.setattr(nilearn, "__version__", version)
    with pytest.raises(NilearnVersionError) as caught:
        compat.check_nilearn_version()
    message = str(caught.value)
    assert "\n" not in message
    assert f"nilearn {version} is installed" in message and compat.NILEARN_REQUIREMENT in message
    assert isinstance(caught.value, ImportError)


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)


def _entry_points() -> list[str]:
    """The modules of ``daskglm``'s public names, and the CLI's parser.

    ``open_run`` and ``to_nifti_zarr`` are left out: reading and converting runs uses no nilearn
    (compat's docstring).
    """
    import daskglm

    exports = daskglm._EXPORTS  # the package's own table of its public names
    return sorted({"daskglm" + module for name, module in exports.items()
                   if name not in ("open_run", "to_nifti_zarr")}
                  | {"daskglm.cli.parser"})


def test_first_use_with_another_nilearn_fails_at_import_with_one_line():
    """``import daskglm`` stays free of the check; importing any public entry point raises one line."""
    fake = "import nilearn\nnilearn.__version__ = '0.12.0'\n"
    assert _run(fake + "import daskglm\nprint(daskglm.__version__)").returncode == 0
    assert "daskglm.first_level.fixed_effects" in _entry_points()
    for module in _entry_points():
        done = _run(fake + f"import {module}")
        assert done.returncode == 1, (module, done.stderr)
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("daskglm.errors.NilearnVersionError: daskglm needs nilearn>=0.14.1,<0.15 "), last
        assert "nilearn 0.12.0 is installed" in last


def test_importing_compat_imports_no_nilearn_submodule():
    """The wrappers import nilearn's modules when called: importing compat costs ``import nilearn`` only."""
    done = _run("import sys\nimport daskglm.compat.nilearn\n"
                "print(sorted(m for m in sys.modules if m.startswith(('nilearn', 'sklearn'))))")
    assert done.returncode == 0, done.stderr
    assert eval(done.stdout.strip().splitlines()[-1]) == ["nilearn", "nilearn._version", "nilearn.exceptions"]


def test_every_wrapper_reaches_its_nilearn_helper():
    """Each wrapper's nilearn import resolves on the supported nilearn (a moved helper fails here)."""
    import inspect

    for name in compat.__all__:
        obj = getattr(compat, name)
        if not inspect.isfunction(obj) or name == "check_nilearn_version":
            continue
        source = inspect.getsource(obj)
        imports = [line.strip() for line in source.splitlines() if line.strip().startswith("from nilearn")]
        assert imports, f"{name} imports nothing from nilearn"
        for line in imports:
            exec(line, {})  # noqa: S102


def test_wrappers_behave_as_nilearn():
    import numpy as np
    import pandas as pd

    assert compat.clean_contrast_name("face - house") == "faceMinusHouse"
    assert compat.contrasts_as_dict("a - b") == {"a - b": "a - b"}
    assert compat.contrasts_as_dict(None) is None
    assert "sub" in compat.bids_entities()["raw"]
    assert compat.bids_files_filter("faces", "MNI", ["ses", "run"], [("run", "1"), ("foo", "x")]) == [
        ("task", "faces"), ("space", "MNI"), ("run", "1")]
    assert compat.surface_map_filename("sub-01_stat-z_statmap.gii", "L", 10242) == (
        "sub-01_hemi-L_den-10242_stat-z_statmap.gii")
    load, rest = compat.split_confounds_kwargs({"confounds_strategy": ("motion",), "other": 1})
    assert load["strategy"] == ("motion",) and load["motion"] == "full" and rest == {"other": 1}
    assert compat.split_confounds_kwargs({"confounds_strategy": None}) == (None, {})
    design = pd.DataFrame({"a": [1.0, 2.0]})
    np.testing.assert_array_equal(compat.contrast_value(None, design), [1])
    with pytest.raises(ValueError):
        compat.check_parameter_in_allowed("x", ["t", "F"], "stat_type")
    with pytest.raises(ValueError, match="No BOLD files found"):
        compat.check_bids_image_list([], "01", [("task", "faces")])
