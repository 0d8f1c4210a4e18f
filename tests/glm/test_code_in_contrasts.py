"""Code in a contrast string is refused, never executed (``compute_contrast`` on a stored fit).

The parser's grammar is in test_contrast_parser; the command line and the
group level refuse code too (tests/cli/test_errors.py, tests/group/test_code_in_contrasts.py).
"""

from __future__ import annotations

import pytest

from daskglm import open_model
from daskglm.errors import ContrastError


def test_contrast_strings_execute_nothing(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = open_model(store)
    for expr in ["a.to_csv('x')", "@pd.read_pickle('evil.pkl')", "__import__('os').system('touch y')",
                 "a + b; import os", "a if 1 else b", "[a, b]", "a**2"]:
        with pytest.raises(ContrastError, match="not valid"):
            model.compute_contrast(expr)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

