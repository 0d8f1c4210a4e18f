"""nilearn 0.14.1's own second-level tests, run against daskglm.

At collection time this module reads the installed
``nilearn/glm/tests/test_second_level.py`` and
``nilearn/glm/tests/test_non_parametric_inference.py``, executes them here
(so their test functions become this module's, prefixed ``slm_`` / ``npi_``
when both define the same name) and swaps the public API they test for
daskglm's: ``SecondLevelModel`` and ``non_parametric_inference``.  nilearn's
own helpers (first-level models, maskers, data generators) and its fixtures
(``nilearn/conftest.py``) stay nilearn's.

Tests of nilearn internals (private helpers, ``run_glm``, estimator checks)
are deselected, and one test of a limit of nilearn's that daskglm does not
have (cluster inference on surfaces), each with a one-line reason
(:data:`DESELECTED`), printed by ``test_deselected_tests_are_listed``.
"""

from __future__ import annotations

from pathlib import Path

import nilearn
import pytest

import daskglm
from tests._nilearn_suites import drop_deselected, without_estimator_checks

NILEARN_VERSION = "0.14.1"
TESTS = Path(nilearn.__file__).parent / "glm" / "tests"
SOURCES = {"slm": TESTS / "test_second_level.py", "npi": TESTS / "test_non_parametric_inference.py"}

_PRIVATE = "tests a private nilearn helper, not the public API"
_BEYOND = ("daskglm computes TFCE and cluster inference on the mesh where nilearn 0.14.1 warns that it "
           "does not (tests/group/test_surface_permutation.py checks the maps)")
#: nilearn test -> why it does not test daskglm's public API.
DESELECTED: dict[str, str] = {
    "test_check_estimator_sklearn": "scikit-learn estimator checks and tags (not copied: needs polars)",
    "test_check_estimator_nilearn": "nilearn estimator-rule checks on internals (not copied: needs polars)",
    "test_process_second_level_input_as_dataframe": _PRIVATE,
    "test_sort_input_dataframe": _PRIVATE,
    "test_process_second_level_input_as_firstlevelmodels": _PRIVATE,
    "test_check_affine_first_level_models": _PRIVATE,
    "test_check_shape_first_level_models": _PRIVATE,
    "test_check_second_level_input": _PRIVATE,
    "test_check_second_level_input_unfit_model": _PRIVATE,
    "test_check_second_level_input_dataframe": _PRIVATE,
    "test_check_second_level_input_confounds": _PRIVATE,
    "test_check_second_level_input_design_matrix": _PRIVATE,
    "test_check_confounds": _PRIVATE,
    "test_check_first_level_contrast": _PRIVATE,
    "test_infer_effect_maps": _PRIVATE,
    "test_infer_effect_maps_error": _PRIVATE,
    "test_with_surface_images_warnings": _BEYOND,
}

if nilearn.__version__ != NILEARN_VERSION or not all(p.exists() for p in SOURCES.values()):  # pragma: no cover
    pytest.skip(f"needs nilearn {NILEARN_VERSION} with its tests", allow_module_level=True)

# nilearn's fixtures (rng, shapes, affines, images), used by the copied tests
from nilearn.conftest import *  # noqa: E402,F401,F403
from nilearn.glm.tests.conftest import *  # noqa: E402,F401,F403


def _copied_source(key: str, text: str) -> str:
    """nilearn's module without its estimator checks (they need polars)."""
    if key == "slm":
        text = without_estimator_checks(text, "def test_process_second_level_input_as_dataframe")
    return text


def _load(key: str, path: Path) -> None:
    namespace: dict = {"__name__": __name__, "__file__": str(path)}
    namespace.update({k: v for k, v in globals().items() if not k.startswith("test_")})
    exec(compile(_copied_source(key, path.read_text()), str(path), "exec"), namespace)  # noqa: S102
    # the swap: the public API under test is daskglm's
    namespace["SecondLevelModel"] = daskglm.SecondLevelModel
    namespace["non_parametric_inference"] = daskglm.non_parametric_inference
    for name, obj in namespace.items():
        if name.startswith("test_"):
            if name not in DESELECTED:
                globals()[name if name not in globals() else f"test_{key}_{name[5:]}"] = obj
        elif name not in globals():  # the module's own fixtures
            globals()[name] = obj


for _key, _path in SOURCES.items():
    _load(_key, _path)
drop_deselected(globals(), DESELECTED, list(SOURCES.values()))


def test_deselected_tests_are_listed():
    """Print the deselected nilearn tests with their reasons."""
    print(f"\nnilearn {NILEARN_VERSION} second-level tests: {len(DESELECTED)} deselected")
    for name, reason in DESELECTED.items():
        print(f"  {name}: {reason}")
    assert all(reason.strip() for reason in DESELECTED.values())


def test_swap_is_in_place():
    """The copied tests call daskglm's API, not nilearn's."""
    slm_test = globals()["test_second_level_glm_computation"]
    npi_test = globals()["test_permutation_computation"]
    assert slm_test.__globals__["SecondLevelModel"] is daskglm.SecondLevelModel
    assert npi_test.__globals__["non_parametric_inference"] is daskglm.non_parametric_inference
