"""Shared by the modules that run nilearn's own test files against daskglm.

nilearn's installed test modules are read as text, their estimator-check
blocks (which import ``nilearn._utils.estimator_checks`` and need polars, and
test scikit-learn tags rather than the GLM) are blanked out line for line so
tracebacks keep nilearn's line numbers, and the text is executed in the
calling test module with the public API swapped for daskglm's.
"""

from __future__ import annotations

from pathlib import Path

import nilearn

NILEARN_VERSION = "0.14.1"
TESTS = Path(nilearn.__file__).parent / "glm" / "tests"

#: nilearn's surface tests in test_first_level.py: run by test_nilearn_first_level_surface.py,
#: deselected from test_nilearn_first_level.py.
FIRST_LEVEL_SURFACE_TESTS = (
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


def blank(text: str, start_marker: str, end_marker: str, inclusive_end: bool = False) -> str:
    """Replace a region by as many blank lines (tracebacks keep nilearn's line numbers)."""
    start = text.index(start_marker)
    end = text.index(end_marker, start) + (len(end_marker) if inclusive_end else 0)
    return text[:start] + "\n" * text[start:end].count("\n") + text[end:]


def without_estimator_checks(text: str, first_test_after: str) -> str:
    """nilearn's module without its estimator-check import and block (ending at ``first_test_after``)."""
    text = blank(text, "from nilearn._utils.estimator_checks import (", ")", inclusive_end=True)
    return blank(text, "ESTIMATORS_TO_CHECK = ", first_test_after)


def first_level_source() -> str:
    """nilearn's test_first_level.py, ready to execute."""
    return without_estimator_checks((TESTS / "test_first_level.py").read_text(), "def test_glm_fit_unfitted_masker")


def drop_deselected(namespace: dict, deselected: dict, sources: list[Path]) -> None:
    """Remove the deselected nilearn tests from a module's namespace, after checking each one exists.

    A deselected name that none of ``sources`` defines is a stale entry (nilearn
    renamed or dropped the test): fail at import rather than deselect nothing.
    Tests blanked out with the estimator checks are absent already.
    """
    texts = [path.read_text() for path in sources]
    missing = sorted(name for name in deselected if not any(f"def {name}(" in text for text in texts))
    assert not missing, f"deselected tests that nilearn's modules do not define (stale DESELECTED): {missing}"
    for name in deselected:
        namespace.pop(name, None)
