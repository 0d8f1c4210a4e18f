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

from pathlib import Path

import nilearn
import pytest

import daskglm

NILEARN_VERSION = "0.14.1"
SOURCE = Path(nilearn.__file__).parent / "glm" / "tests" / "test_first_level.py"

#: nilearn test -> why it does not test daskglm's public volume API.
_SURFACE = "surface data (SurfaceImage / SurfaceMasker): the surfaces issue, not this module"
_NILEARN_FUNCTION = "tests a nilearn function that is not swapped (daskglm has no run_glm/mean_scaling)"
DESELECTED: dict[str, str] = {
    "test_check_estimator_sklearn": "scikit-learn estimator checks and tags (not copied: needs polars)",
    "test_check_estimator_nilearn": "nilearn estimator-rule checks on internals (not copied: needs polars)",
    "test_run_glm_ols": _NILEARN_FUNCTION,
    "test_run_glm_ar1": _NILEARN_FUNCTION,
    "test_run_glm_ar3": _NILEARN_FUNCTION,
    "test_run_glm_errors": _NILEARN_FUNCTION,
    "test_glm_ar_estimates": "nilearn's private _yule_walker and run_glm (daskglm: tests/test_kernels_glm.py)",
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
    "test_flm_fit_surface_image_default_mask_img": _SURFACE,
    "test_flm_fit_surface_image": _SURFACE,
    "test_flm_fit_surface_image_one_hemisphere": _SURFACE,
    "test_flm_fit_surface_image_with_mask": _SURFACE,
    "test_error_flm_surface_mask_volume_image": _SURFACE,
    "test_error_flm_surface_different_mesh": _SURFACE,
    "test_error_flm_volume_mask_surface_image": _SURFACE,
    "test_flm_with_surface_image_with_surface_masker": _SURFACE,
    "test_flm_with_surface_masker_with_mask": _SURFACE,
    "test_flm_with_surface_data_no_design_matrix": _SURFACE,
    "test_flm_compute_contrast_with_surface_data": _SURFACE,
    "test_flm_get_element_wise_model_attribute_with_surface_data": _SURFACE,
    "test_fixed_effect_contrast_surface": _SURFACE,
}

if nilearn.__version__ != NILEARN_VERSION or not SOURCE.exists():  # pragma: no cover
    pytest.skip(f"needs nilearn {NILEARN_VERSION} with its tests", allow_module_level=True)

# nilearn's fixtures (rng, shapes, affines, images), used by the copied tests
from nilearn.conftest import *  # noqa: E402,F401,F403


def _copied_source(text: str) -> str:
    """nilearn's test module without its scikit-learn/nilearn estimator checks.

    Those checks (and their import of ``nilearn._utils.estimator_checks``, which
    needs polars) test estimator tags and internals, not the GLM; the line
    numbers of the remaining tests are kept so tracebacks point at nilearn's file.
    """
    start = text.index("from nilearn._utils.estimator_checks import (")
    end = text.index(")", start) + 1
    text = text[:start] + "\n" * text[start:end].count("\n") + text[end:]
    start = text.index("ESTIMATORS_TO_CHECK = ")
    end = text.index("def test_glm_fit_unfitted_masker")
    return text[:start] + "\n" * text[start:end].count("\n") + text[end:]


exec(compile(_copied_source(SOURCE.read_text()), str(SOURCE), "exec"), globals())  # noqa: S102

# the swap: the public API under test is daskglm's
FirstLevelModel = daskglm.FirstLevelModel  # noqa: F811
compute_fixed_effects = daskglm.compute_fixed_effects  # noqa: F811

# every deselected name is a test of nilearn's module (some are blanked out with the estimator checks)
_missing = sorted(name for name in DESELECTED if f"def {name}(" not in SOURCE.read_text())
assert not _missing, f"deselected tests that nilearn's module does not define (stale DESELECTED): {_missing}"
for _name in DESELECTED:
    globals().pop(_name, None)


def test_deselected_tests_are_listed():
    """Print the deselected nilearn tests with their reasons."""
    print(f"\nnilearn {NILEARN_VERSION} test_first_level.py: {len(DESELECTED)} tests deselected")
    for name, reason in DESELECTED.items():
        print(f"  {name}: {reason}")
    assert all(reason.strip() for reason in DESELECTED.values())
