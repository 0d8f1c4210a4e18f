"""nilearn 0.14.1's own surface ``FirstLevelModel`` tests, run against daskglm.

The companion of ``tests/first_level/test_nilearn_first_level.py`` (which deselects these
tests): the installed ``nilearn/glm/tests/test_first_level.py`` is executed
here, the public API it tests is swapped for daskglm's (``FirstLevelModel``,
``compute_fixed_effects``), and only its surface tests (:data:`SURFACE_TESTS`)
are kept.  nilearn's helpers and fixtures (``surface_glm_data``, meshes,
``SurfaceMasker``) stay nilearn's.
"""

from __future__ import annotations

import nilearn
import pytest

import daskglm
from tests._nilearn_suites import FIRST_LEVEL_SURFACE_TESTS, NILEARN_VERSION, TESTS, first_level_source

SOURCE = TESTS / "test_first_level.py"

SURFACE_TESTS = FIRST_LEVEL_SURFACE_TESTS

if nilearn.__version__ != NILEARN_VERSION or not SOURCE.exists():  # pragma: no cover
    pytest.skip(f"needs nilearn {NILEARN_VERSION} with its tests", allow_module_level=True)

from nilearn.conftest import *  # noqa: E402,F401,F403

exec(compile(first_level_source(), str(SOURCE), "exec"), globals())  # noqa: S102

# the swap: the public API under test is daskglm's
FirstLevelModel = daskglm.FirstLevelModel  # noqa: F811
compute_fixed_effects = daskglm.compute_fixed_effects  # noqa: F811

for _name in [n for n in list(globals()) if n.startswith("test_") and n not in SURFACE_TESTS]:
    globals().pop(_name)

def test_all_surface_tests_are_collected():
    """Every listed nilearn surface test exists in the installed nilearn and is kept here."""
    missing = [name for name in SURFACE_TESTS if name not in globals()]
    assert not missing, missing
