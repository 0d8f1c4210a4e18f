"""nilearn 0.14.1's own surface ``FirstLevelModel`` tests, run against daskglm.

The companion of ``tests/test_nilearn_first_level.py`` (which deselects these
tests): the installed ``nilearn/glm/tests/test_first_level.py`` is executed
here, the public API it tests is swapped for daskglm's (``FirstLevelModel``,
``compute_fixed_effects``), and only its surface tests (:data:`SURFACE_TESTS`)
are kept.  nilearn's helpers and fixtures (``surface_glm_data``, meshes,
``SurfaceMasker``) stay nilearn's.
"""

from __future__ import annotations

from pathlib import Path

import nilearn
import pytest

import daskglm

NILEARN_VERSION = "0.14.1"
SOURCE = Path(nilearn.__file__).parent / "glm" / "tests" / "test_first_level.py"

#: nilearn's surface tests of test_first_level.py (all of them are kept).
SURFACE_TESTS = (
    "test_flm_fit_surface_image_default_mask_img",
    "test_flm_fit_surface_image",
    "test_flm_fit_surface_image_one_hemisphere",
    "test_flm_fit_surface_image_with_mask",
    "test_error_flm_surface_mask_volume_image",
    "test_error_flm_surface_different_mesh",
    "test_error_flm_volume_mask_surface_image",
    "test_flm_with_surface_image_with_surface_masker",
    "test_flm_with_surface_masker_with_mask",
    "test_flm_with_surface_data_no_design_matrix",
    "test_flm_compute_contrast_with_surface_data",
    "test_flm_get_element_wise_model_attribute_with_surface_data",
    "test_fixed_effect_contrast_surface",
)

if nilearn.__version__ != NILEARN_VERSION or not SOURCE.exists():  # pragma: no cover
    pytest.skip(f"needs nilearn {NILEARN_VERSION} with its tests", allow_module_level=True)

from nilearn.conftest import *  # noqa: E402,F401,F403


def _copied_source(text: str) -> str:
    """nilearn's test module without its estimator checks (line numbers kept)."""
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

for _name in [n for n in list(globals()) if n.startswith("test_") and n not in SURFACE_TESTS]:
    globals().pop(_name)

def test_all_surface_tests_are_collected():
    """Every listed nilearn surface test exists in the installed nilearn and is kept here."""
    missing = [name for name in SURFACE_TESTS if name not in globals()]
    assert not missing, missing
