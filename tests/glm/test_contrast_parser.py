"""The contrast expression parser (issue 11, item 5): nilearn's vectors, nothing executed.

- every expression nilearn 0.14.1's own tests accept gives nilearn's vector;
- random well-formed expressions over identifier columns equal nilearn's
  ``expression_to_contrast_vector`` (hypothesis);
- anything else is a ``ContrastError`` showing the expression and a caret;
- no ``eval``/``exec`` anywhere in the package source.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nilearn.glm.contrasts import expression_to_contrast_vector as nilearn_vector

from daskglm.errors import ContrastError
from daskglm.glm.contrasts import expression_to_contrast_vector
from tests.conftest import SETTINGS

PACKAGE = Path(__file__).parents[2] / "daskglm"

#: The expressions of nilearn 0.14.1's tests (glm/tests/test_contrasts.py, test_first_level*.py,
#: test_io.py, test_glm_reporter.py, test_non_parametric_inference.py), with their columns.
NILEARN_CASES = [
    ("face / 10 + (window - face) * 2 - house", ["a", "face", "xy_z", "house", "window"]),
    ("xy_z", ["a", "face", "xy_z", "house", "window"]),
    ("a - b", ["a", "b", "a - b"]),
    ("column_1", ["column_1"]),
    ("c0-c1+c2", ["c0", "c1", "c2", "constant"]),
    ("c0", ["c0", "c1", "constant"]),
    ("AAA - BBB", ["AAA", "BBB", "constant"]),
    ("AAA-BBB", ["AAA", "BBB", "constant"]),
    ("r1", ["r1", "r2"]),
    ("r1-r2", ["r1", "r2"]),
    ("x", ["x"]),
    ("intercept", ["intercept"]),
    ("seed1 - seed2", ["seed1", "seed2"]),
    ("seed1 - seed2", ["seed1 - seed2", "seed1", "seed2"]),
]


@pytest.mark.parametrize(("expression", "columns"), NILEARN_CASES)
def test_nilearn_test_expressions(expression, columns):
    np.testing.assert_array_equal(expression_to_contrast_vector(expression, columns),
                                  nilearn_vector(expression, columns))


@pytest.mark.parametrize(("expression", "expected"), [
    ("1e-3 * a", [0.001, 0, 0]), (".5*a - 2.*b", [0.5, -2, 0]), ("-a", [-1, 0, 0]),
    ("- -a", [1, 0, 0]), ("+a", [1, 0, 0]), ("(a + b) / 4", [0.25, 0.25, 0]),
    ("2 * (3 * (a - b))", [6, -6, 0]), ("a/2/2", [0.25, 0, 0]), ("1E2*b", [0, 100, 0]),
    ("`a` - `my col-2`", [1, 0, -1]), ("  a\t-\nb ", [1, -1, 0]), ("my col-2", [0, 0, 1]),
])
def test_numbers_signs_parentheses_backticks(expression, expected):
    np.testing.assert_allclose(expression_to_contrast_vector(expression, ["a", "b", "my col-2"]), expected)


def test_unicode_column_names():
    np.testing.assert_array_equal(expression_to_contrast_vector("café - b", ["café", "b"]), [1, -1])
    np.testing.assert_array_equal(expression_to_contrast_vector("`cü`", ["cü", "b"]), [1, 0])


@pytest.mark.parametrize(("expression", "position"), [
    ("a.to_csv('x')", 1), ("@pd.read_pickle('evil.pkl')", 0), ("__import__('os')", 0),
    ("a ** 2", 2), ("a // 2", 2), ("a * b", 2), ("a / b", 2), ("1 / a", 2), ("a + 1", 2),
    ("(a", 2), ("a)", 1), ("", 0), ("a +", 3), ("2a", 1), ("a b", 2), ("a; b", 1), ("a[0]", 1),
    ("lambda: a", 0), ("a if b else a", 2), ("a == b", 2), ("`a", 0), ("a / 0", 2),
    ("0-1", 0), ("nan * a", 0), ("a, b", 1), ("{a}", 0), ("a & b", 2), ("~a", 0),
])
def test_rejected_with_caret(expression, position):
    with pytest.raises(ContrastError) as info:
        expression_to_contrast_vector(expression, ["a", "b", "0", "1"])
    message = str(info.value)
    assert "not valid" in message and f"(position {position})" in message
    lines = message.splitlines()
    assert lines[1].strip() == expression.strip() or not expression.strip()
    assert lines[2].index("^") - lines[1].index(expression[:1] or " ") == position or not expression


def test_nilearn_rejects_what_we_reject():
    """nilearn's own error case (numbers named like columns) is an error here too."""
    with pytest.raises(ValueError):
        nilearn_vector("0-1", ["0", "1"])
    with pytest.raises(ContrastError):
        expression_to_contrast_vector("0-1", ["0", "1"])


def test_pathological_input_is_bounded():
    with pytest.raises(ContrastError, match="nesting"):
        expression_to_contrast_vector("(" * 3000 + "a" + ")" * 3000, ["a"])
    with pytest.raises(ContrastError, match="longer"):
        expression_to_contrast_vector("a+" * 10_000 + "a", ["a"])


COLUMNS = ["a", "b1", "face", "house_2"]
numbers = st.sampled_from(["2", "0.5", ".25", "1e-3", "3.", "10"])


def _expressions(depth: int):
    leaf = st.one_of(st.sampled_from(COLUMNS), st.tuples(numbers, st.sampled_from(COLUMNS)).map(
        lambda t: f"{t[0]} * {t[1]}"))
    if depth == 0:
        return leaf
    sub = _expressions(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from(["+", "-"]), sub).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        sub.map(lambda e: f"({e})"),
        sub.map(lambda e: f"-({e})"),
        st.tuples(numbers, sub).map(lambda t: f"{t[0]} * ({t[1]})"),
        st.tuples(sub, numbers).map(lambda t: f"({t[0]}) / {t[1]}"),
    )


@SETTINGS
@given(_expressions(3))
def test_random_expressions_equal_nilearn(expression):
    np.testing.assert_allclose(expression_to_contrast_vector(expression, COLUMNS),
                               nilearn_vector(expression, COLUMNS), rtol=1e-12, atol=1e-15)


@SETTINGS
@given(st.text(max_size=40))
def test_any_text_gives_a_vector_or_a_contrast_error(text):
    try:
        vec = expression_to_contrast_vector(text, COLUMNS)
    except ContrastError as err:
        assert "not valid" in str(err) or "non-finite" in str(err)
    else:
        assert vec.shape == (len(COLUMNS),) and np.all(np.isfinite(vec))


def test_no_eval_or_exec_in_the_package():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name in ("eval", "exec", "query", "literal_eval", "compile") and not (
                        name == "compile" and isinstance(func, ast.Attribute)):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
        text = path.read_text()
        if re.search(r"\bpickle\.loads?\(|read_pickle\(", text):
            offenders.append(f"{path.relative_to(PACKAGE)}: unpickling")
    assert not offenders, offenders
