"""nilearn 0.14.1's own ``FirstLevelModel`` tests, run against daskglm.

At collection time this module reads the installed
``nilearn/glm/tests/test_first_level.py``, executes it here (so its test
functions become this module's), and swaps the public API it tests for
daskglm's: ``FirstLevelModel`` and ``compute_fixed_effects``.  nilearn's own
helpers (``nilearn._utils.data_gen``, ``nilearn.maskers``, ...) and its
fixtures (``nilearn/conftest.py``) stay nilearn's.

Tests that exercise nilearn internals (private functions, ``run_glm``, memory
caching, scikit-learn estimator checks and tags) or surface data are
deselected, each with a one-line reason (:data:`DESELECTED`), printed by
``test_deselected_tests_are_listed``.
"""

from __future__ import annotations

import nilearn
import pytest

import daskglm
from tests._nilearn_suites import (
    FIRST_LEVEL_SURFACE_TESTS,
    NILEARN_VERSION,
    TESTS,
    drop_deselected,
    first_level_source,
)

SOURCE = TESTS / "test_first_level.py"

#: nilearn test -> why it does not test daskglm's public volume API.
_SURFACE = "surface data (SurfaceImage / SurfaceMasker): run by tests/first_level/test_nilearn_first_level_surface.py"
_NILEARN_FUNCTION = "tests a nilearn function that is not swapped (daskglm has no run_glm/mean_scaling)"
DESELECTED: dict[str, str] = {
    "test_check_estimator_sklearn": "scikit-learn estimator checks and tags (not copied: needs polars)",
    "test_check_estimator_nilearn": "nilearn estimator-rule checks on internals (not copied: needs polars)",
    "test_run_glm_ols": _NILEARN_FUNCTION,
    "test_run_glm_ar1": _NILEARN_FUNCTION,
    "test_run_glm_ar3": _NILEARN_FUNCTION,
    "test_run_glm_errors": _NILEARN_FUNCTION,
    "test_glm_ar_estimates": "nilearn's private _yule_walker and run_glm (daskglm: tests/kernels/test_glm.py)",
    "test_glm_ar_estimates_errors": "nilearn's private _yule_walker",
    "test_glm_random_state": "mocks sklearn KMeans inside nilearn's run_glm (daskglm bins arN per voxel)",
    "test_scaling": _NILEARN_FUNCTION,
    "test_first_level_with_no_signal_scaling": (
        "reads results_[0][0].theta, nilearn's per-label RegressionResults; daskglm's results_ is an "
        "xarray.Dataset (docs/architecture.md, Known divergences)"
    ),
    "test_check_trial_type_warning": "nilearn's private _check_trial_type (BIDS helper)",
    "test_list_valid_subjects_with_toplevel_files": "nilearn's private _list_valid_subjects (BIDS helper)",
    "test_check_run_tables_errors": "nilearn's private _check_run_tables",
    "test_img_table_checks": "nilearn's private _check_length_match",
    "test_high_level_glm_different_design_matrices_formulas": (
        "expects the 'pass contrast as an expression' warning when an expression was passed; daskglm "
        "does not give that false warning (tests/glm/test_contrasts.py::test_an_expression_for_all_runs_is_quiet)"
    ),
    **dict.fromkeys(FIRST_LEVEL_SURFACE_TESTS, _SURFACE),
}

if nilearn.__version__ != NILEARN_VERSION or not SOURCE.exists():  # pragma: no cover
    pytest.skip(f"needs nilearn {NILEARN_VERSION} with its tests", allow_module_level=True)

# nilearn's fixtures (rng, shapes, affines, images), used by the copied tests
from nilearn.conftest import *  # noqa: E402,F401,F403

exec(compile(first_level_source(), str(SOURCE), "exec"), globals())  # noqa: S102

# the swap: the public API under test is daskglm's
FirstLevelModel = daskglm.FirstLevelModel  # noqa: F811
compute_fixed_effects = daskglm.compute_fixed_effects  # noqa: F811

drop_deselected(globals(), DESELECTED, [SOURCE])


def test_deselected_tests_are_listed():
    """Print the deselected nilearn tests with their reasons."""
    print(f"\nnilearn {NILEARN_VERSION} test_first_level.py: {len(DESELECTED)} tests deselected")
    for name, reason in DESELECTED.items():
        print(f"  {name}: {reason}")
    assert all(reason.strip() for reason in DESELECTED.values())
