"""Deprecated alias of :mod:`daskglm.subjects` (the module was renamed).

``from daskglm.multi import fit_subjects`` keeps working, with a
:class:`DeprecationWarning`; import from :mod:`daskglm.subjects` instead.
"""

from __future__ import annotations

import warnings

from .subjects import SubjectsError, SubjectsResult, fit_subjects, load_spec, open_subject

__all__ = ["fit_subjects", "open_subject", "load_spec", "SubjectsResult", "SubjectsError"]

warnings.warn(
    "daskglm.multi is deprecated and will be removed; import from daskglm.subjects instead.",
    DeprecationWarning,
    stacklevel=2,
)
