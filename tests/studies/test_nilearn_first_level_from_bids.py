"""nilearn 0.14.1's own ``first_level_from_bids`` tests, run against daskglm.

At collection time this module reads the installed
``nilearn/glm/tests/test_first_level_from_bids.py``, executes it here (so its
test functions become this module's), and swaps the public API it tests for
daskglm's: ``first_level_from_bids`` and ``FirstLevelModel`` (so nilearn's
``isinstance(model, FirstLevelModel)`` checks require daskglm models).
nilearn's helpers (``nilearn._utils.data_gen.create_fake_bids_dataset``, ...)
and its fixtures (``nilearn/conftest.py``) stay nilearn's.  The loader pattern
is that of ``tests/test_nilearn_first_level.py``.

Tests that exercise nilearn internals are deselected, each with a one-line
reason (:data:`DESELECTED`), printed by ``test_deselected_tests_are_listed``.
"""

from __future__ import annotations

import re
from pathlib import Path

import nilearn
import pytest

import daskglm
from tests._nilearn_suites import drop_deselected

NILEARN_VERSION = "0.14.1"
SOURCE = Path(nilearn.__file__).parent / "glm" / "tests" / "test_first_level_from_bids.py"

#: nilearn test -> why it does not test daskglm's public API.  Empty: every test of nilearn's
#: module calls ``first_level_from_bids`` (the surface one, ``test_surface``, included).
DESELECTED: dict[str, str] = {}

if nilearn.__version__ != NILEARN_VERSION or not SOURCE.exists():  # pragma: no cover
    pytest.skip(f"needs nilearn {NILEARN_VERSION} with its tests", allow_module_level=True)

# nilearn's fixtures (rng, shapes, affines, images), used by the copied tests
from nilearn.conftest import *  # noqa: E402,F401,F403

exec(compile(SOURCE.read_text(), str(SOURCE), "exec"), globals())  # noqa: S102

# the swap: the public API under test is daskglm's
FirstLevelModel = daskglm.FirstLevelModel  # noqa: F811
first_level_from_bids = daskglm.first_level_from_bids  # noqa: F811

drop_deselected(globals(), DESELECTED, [SOURCE])


def test_deselected_tests_are_listed():
    """Print the deselected nilearn tests with their reasons; every other nilearn test is copied here."""
    print(f"\nnilearn {NILEARN_VERSION} test_first_level_from_bids.py: {len(DESELECTED)} tests deselected")
    for name, reason in DESELECTED.items():
        print(f"  {name}: {reason}")
    assert all(reason.strip() for reason in DESELECTED.values())
    nilearn_tests = set(re.findall(r"^def (test_\w+)\(", SOURCE.read_text(), flags=re.MULTILINE))
    assert len(nilearn_tests) >= 40
    assert {name for name in globals() if name.startswith("test_")} - {"test_deselected_tests_are_listed"} == (
        nilearn_tests - set(DESELECTED))
