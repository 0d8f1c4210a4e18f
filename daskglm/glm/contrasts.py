"""Contrast definitions: parsing and checking what the user asks for.

A contrast definition is an expression over the design's column names, a 1-D
(t) or 2-D (F) array of weights, or a list of them, one per run.  This module
turns definitions into checked float matrices with nilearn 0.14.1's rules
(expressions give nilearn's vectors, short contrasts are zero-padded with a
warning, multi-row t contrasts become F, one contrast for all runs with a
warning).  Expressions are read by a small recursive-descent parser
(:class:`_Parser`: numbers, column names, ``+ - * /``, unary signs,
parentheses) and never evaluated as code: a contrast file shared with a
pipeline cannot run anything.  The numbers computed from a parsed contrast (effects, variances,
statistics, fixed effects) are in :mod:`daskglm.kernels.contrast`.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from daskglm.errors import ContrastError
from daskglm.kernels.contrast import OUTPUT_TYPES  # defined with the packed rows; re-exported for the API

__all__ = [
    "OUTPUT_TYPES",
    "OUTPUT_SUFFIX",
    "ContrastError",
    "expression_to_contrast_vector",
    "as_contrast_matrix",
    "pad_contrast",
    "contrast_kind",
    "per_run_contrasts",
]

#: The file suffix of each output type (z maps named as in nilearn's example: ``<contrast>_z_map.nii.gz``).
OUTPUT_SUFFIX = dict(zip(OUTPUT_TYPES, ("z_map", "stat_map", "p_map", "effect_size", "effect_variance")))


def expression_to_contrast_vector(expression: str, columns: list[str]) -> np.ndarray:
    """Turn an expression over design column names into a contrast vector.

    nilearn's semantics without evaluating code: a bare column name (whatever
    its characters) selects that column; otherwise the expression is parsed by
    a small recursive-descent parser (:class:`_Parser`) whose grammar is::

        expr   := term (('+' | '-') term)*
        term   := factor (('*' | '/') factor)*
        factor := ('+' | '-') factor | number | name | '`' any-name '`' | '(' expr ')'

    Numbers are decimal literals (``2``, ``.5``, ``1e-3``); names are Python
    identifiers (Unicode letters included, as pandas/nilearn read them) or any
    column name in backticks (pandas' quoting of names that are not
    identifiers).  A name stands for its unit vector; the result must be a
    linear combination of columns.  Nothing is evaluated.

    Parameters
    ----------
    expression : str
    columns : list
        The design's column names.

    Returns
    -------
    ndarray of float64, shape (len(columns),)

    Raises
    ------
    ContrastError
        With the expression and a caret under the position that failed.
    """
    columns = list(columns)
    if not isinstance(expression, str):
        raise ContrastError(f"A contrast expression must be a string, got {type(expression).__name__}.")
    if expression in columns:
        _check_unambiguous(expression, columns)
        vec = np.zeros(len(columns))
        vec[columns.index(expression)] = 1.0
        return vec
    vec = _Parser(expression, [str(c) for c in columns]).parse()
    if not np.all(np.isfinite(vec)):
        raise ContrastError(f"The contrast expression {expression!r} gives non-finite weights {vec}.")
    return vec


def _check_unambiguous(name: str, columns: list) -> None:
    """Refuse a column name that the design has more than once (nilearn would take the first)."""
    count = sum(str(c) == str(name) for c in columns)
    if count > 1:
        raise ContrastError(
            f"The contrast expression names the design column {str(name)!r}, which is ambiguous: "
            f"the design has {count} columns of that name ({[str(c) for c in columns]}). "
            "Give the contrast as a vector or a matrix of weights instead."
        )


#: Longest contrast expression parsed (a guard against pathological input).
MAX_EXPRESSION_LENGTH = 10_000
#: Deepest nesting of parentheses and unary signs.
MAX_DEPTH = 100
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[^\W\d]\w*")


class _Parser:
    """Recursive-descent parser of contrast expressions (see :func:`expression_to_contrast_vector`).

    Values are ``(scalar, None)`` for numbers and ``(None, vector)`` for
    linear combinations of columns.
    """

    def __init__(self, text: str, columns: list[str]):
        self.text, self.columns, self.pos, self.depth = text, columns, 0, 0

    # ----------------------------------------------------------- reporting
    def error(self, message: str, pos: int | None = None) -> ContrastError:
        pos = self.pos if pos is None else pos
        shown = self.text if len(self.text) <= 200 else self.text[:200] + "..."
        caret = " " * min(pos, len(shown)) + "^"
        return ContrastError(
            f"The contrast expression {self.text[:200]!r} is not valid: {message} (position {pos})\n"
            f"  {shown}\n  {caret}\n"
            f"Available design columns are: {self.columns}. Write column names that are not "
            "Python identifiers in backticks, e.g. `my-column` - b."
            + self._identifier_hint()
        )

    def _identifier_hint(self) -> str:
        """nilearn's hint when some design columns are not Python identifiers."""
        if all(str(c).isidentifier() for c in self.columns):
            return ""
        return (
            "\nThis could be due to defining the contrasts using design matrix columns that are "
            "invalid python identifiers."
        )

    # ------------------------------------------------------------ scanning
    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    # ------------------------------------------------------------- grammar
    def parse(self) -> np.ndarray:
        if len(self.text) > MAX_EXPRESSION_LENGTH:
            raise ContrastError(f"The contrast expression is longer than {MAX_EXPRESSION_LENGTH} characters.")
        if not self.text.strip():
            raise self.error("the expression is empty")
        value = self.expr()
        if self.peek():
            raise self.error(f"unexpected {self.peek()!r}")
        scalar, vec = value
        if vec is None:
            raise self.error("the expression refers to no design column", 0)
        return vec

    def expr(self):
        left = self.term()
        while self.peek() in ("+", "-") and self.peek():
            op, at = self.text[self.pos], self.pos
            self.pos += 1
            right = self.term()
            left = self.combine(left, right, op, at)
        return left

    def term(self):
        left = self.factor()
        while self.peek() in ("*", "/") and self.peek():
            op, at = self.text[self.pos], self.pos
            self.pos += 1
            if self.peek() == op:
                raise self.error(f"{op * 2!r} is not supported (only + - * / and parentheses)", at)
            right = self.factor()
            left = self.scale(left, right, op, at)
        return left

    def factor(self):
        ch = self.peek()
        if not ch:
            raise self.error("the expression ends where a number, a column or '(' was expected")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nesting deeper than {MAX_DEPTH}")
        try:
            if ch in "+-":
                self.pos += 1
                scalar, vec = self.factor()
                sign = -1.0 if ch == "-" else 1.0
                return (None, sign * vec) if vec is not None else (sign * scalar, None)
            if ch == "(":
                self.pos += 1
                value = self.expr()
                if self.peek() != ")":
                    raise self.error("missing ')'")
                self.pos += 1
                return value
            return self.atom()
        finally:
            self.depth -= 1

    def atom(self):
        start = self.pos
        if self.text[start] == "`":
            end = self.text.find("`", start + 1)
            if end < 0:
                raise self.error("unterminated backtick name")
            self.pos = end + 1
            return None, self.column(self.text[start + 1:end], start)
        number = _NUMBER.match(self.text, start)
        if number:
            self.pos = number.end()
            if _NAME.match(self.text, self.pos):
                raise self.error("a number directly followed by a name (write 2 * a)")
            return float(number.group()), None
        name = _NAME.match(self.text, start)
        if name:
            self.pos = name.end()
            return None, self.column(name.group(), start)
        raise self.error(f"unexpected {self.text[start]!r} (only numbers, column names, + - * / and "
                         "parentheses are allowed)")

    # ---------------------------------------------------------- arithmetic
    def column(self, name: str, at: int) -> np.ndarray:
        if name not in self.columns:
            raise self.error(f"Unknown names: [{name!r}] (name {name!r} is not defined: not a design column)", at)
        _check_unambiguous(name, self.columns)
        vec = np.zeros(len(self.columns))
        vec[self.columns.index(name)] = 1.0
        return vec

    def combine(self, left, right, op: str, at: int):
        sign = 1.0 if op == "+" else -1.0
        (ls, lv), (rs, rv) = left, right
        if lv is None and rv is None:
            return ls + sign * rs, None
        if lv is None or rv is None:
            raise self.error("a number added to columns (a contrast is a weighted sum of columns)", at)
        return None, lv + sign * rv

    def scale(self, left, right, op: str, at: int):
        (ls, lv), (rs, rv) = left, right
        if rv is not None and (op == "/" or lv is not None):
            raise self.error("product or quotient of columns (a contrast must be linear)", at)
        if op == "/" and rs == 0:
            raise self.error("division by zero", at)
        factor = rs if op == "*" else 1.0 / rs
        if lv is None:
            if rv is not None:
                return None, ls * rv
            return ls * factor, None
        return None, lv * factor


def as_contrast_matrix(con, columns: list[str]) -> np.ndarray:
    """A contrast definition (vector, matrix or expression) as a float array.

    Parameters
    ----------
    con : str, sequence or ndarray
        An expression over ``columns``, or 1-D (t) / 2-D (F) weights.
    columns : list
        The design's column names.

    Returns
    -------
    ndarray of float64, shape (k,) or (q, k)
        Length checks against the design happen in :func:`pad_contrast`.

    Raises
    ------
    ContrastError
        Non-numeric, empty, not 1-D/2-D, or non-finite weights; invalid expressions.
    """
    if isinstance(con, str):
        return expression_to_contrast_vector(con, columns)
    arr = _checked_array(con)
    if not np.all(np.isfinite(arr)):
        raise ContrastError(f"Contrast {_short_repr(con)} contains NaN or infinite values.")
    return arr


def _checked_array(con) -> np.ndarray:
    """``con`` as a non-empty 1-D or 2-D numeric array, or a ContrastError."""
    try:
        arr = np.asarray(con, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ContrastError(f"Contrast {_short_repr(con)} is not numeric: {err}") from err
    if arr.ndim == 1 and arr.size == 0:  # nilearn's message
        raise ContrastError("t contrasts cannot be empty: a contrast must be a non-empty 1-D or 2-D array.")
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise ContrastError(f"A contrast must be a non-empty 1-D or 2-D array, got shape {arr.shape}.")
    return arr


def _short_repr(obj, limit: int = 200) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 5] + " ...)"


def contrast_kind(con: np.ndarray, stat_type: str | None) -> tuple[str, int]:
    """nilearn's rule: 1-D (or one row) is t unless told otherwise, 2-D is F.

    Parameters
    ----------
    con : ndarray (p,) or (q, p)
    stat_type : {None, 't', 'F'}

    Returns
    -------
    (str, int)
        ``('t' or 'F', number of contrast rows)``; a multi-row t becomes F.
    """
    con = _checked_array(con)
    dim = con.shape[0] if con.ndim == 2 else 1
    if stat_type is None:
        stat_type = "t" if dim == 1 else "F"
    if stat_type not in ("t", "F"):
        raise ContrastError(f"stat_type must be 't', 'F' or None, got {stat_type!r}.")
    if stat_type == "t" and dim > 1:
        stat_type = "F"  # nilearn converts multi-row t contrasts to F
    return stat_type, dim


def pad_contrast(con: np.ndarray, n_regressors: int, stat_type: str) -> np.ndarray:
    """Zero-pad a short contrast with nilearn's warning; reject a long one.

    Parameters
    ----------
    con : ndarray (p,) or (q, p)
    n_regressors : int
        Number of design columns P.
    stat_type : {'t', 'F'}

    Returns
    -------
    ndarray of shape (P,) or (q, P)

    Raises
    ------
    ContrastError
        If the contrast is not a non-empty 1-D/2-D array, or is longer than P.
    """
    con = _checked_array(con)
    if isinstance(n_regressors, bool) or not isinstance(n_regressors, (int, np.integer)) \
            or n_regressors < 1:
        raise ValueError(f"n_regressors must be a positive integer, got {n_regressors!r}.")
    if stat_type not in ("t", "F"):
        raise ContrastError(f"stat_type must be 't' or 'F', got {stat_type!r}.")
    n_cols = con.shape[-1]
    if n_cols > n_regressors:
        what = "t contrasts should be of length" if stat_type == "t" else "F contrasts should have"
        raise ContrastError(
            f"{what} P={n_regressors} (the number of design columns), "
            f"but it has length {n_cols}."
        )
    if n_cols < n_regressors:
        if stat_type == "t":
            msg = (
                f"t contrasts should be of length P={n_regressors}, but it has length "
                f"{n_cols}. The rest of the contrast was padded with zeros."
            )
        else:
            msg = (
                f"F contrasts should have {n_regressors} columns, but it has only "
                f"{n_cols}. The rest of the contrast was padded with zeros."
            )
        warnings.warn(msg, UserWarning, stacklevel=4)
        pad = [(0, 0)] * (con.ndim - 1) + [(0, n_regressors - n_cols)]
        con = np.pad(con, pad)
    return con


def per_run_contrasts(
    contrast_def, columns_per_run: list[list], *, stacklevel: int = 4
) -> list[np.ndarray]:
    """One checked contrast matrix per run, from a model-level contrast definition.

    nilearn's rules: a single definition (array, expression, or a plain list
    of weights) is used for every run, with a warning when there are several
    runs; a list of definitions must have one per run; a nested list of
    numbers is one F matrix when there is a single run.

    Parameters
    ----------
    contrast_def : str, array, or list of them
        The definition as given to ``compute_contrast``.
    columns_per_run : list of list
        Each run's design column names; the number of runs is its length.
    stacklevel : int, default=4
        ``stacklevel`` of the "The same contrast will be used" warning, counted from this
        function (4 reaches the caller of a method that calls a helper that
        calls this function).

    Returns
    -------
    list of ndarray
        One (k,) or (q, k) float array per run (not yet padded; see
        :func:`pad_contrast`).

    Raises
    ------
    ContrastError
        Wrong type, an empty list, a number of definitions different from the
        number of runs, invalid weights or expressions, or only zero weights.
    """
    n_runs = len(columns_per_run)
    if isinstance(contrast_def, (np.ndarray, str)):
        con_vals = [contrast_def]
    elif isinstance(contrast_def, (list, tuple)):
        con_vals = list(contrast_def)
        if len(con_vals) == 0:
            raise ContrastError(
                f"0 contrasts given, while there are {n_runs} runs. The contrast definition is an empty list."
            )
        if all(np.isscalar(c) and not isinstance(c, str) for c in con_vals):
            con_vals = [np.asarray(con_vals, dtype=float)]  # a plain list of weights
        elif all(isinstance(c, (list, tuple)) and all(np.isscalar(x) for x in c) for c in con_vals) \
                and n_runs == 1 and len(con_vals) > 1:
            con_vals = [np.asarray(con_vals, dtype=float)]  # a nested list = one F matrix
    else:
        raise ContrastError(
            "contrast_def must be an array or str or list of (array or str), "
            f"got {type(contrast_def).__name__}."
        )
    if len(con_vals) == 1 and n_runs > 1:
        if not isinstance(con_vals[0], str):  # an expression is resolved by name in each run: no advice to give
            warnings.warn(  # nilearn's warning (category and text), for weights applied to every run by position
                f"The same contrast will be used for all {n_runs} runs. "
                "If the design matrices are not the same for all runs, "
                "(for example with different column names or column order across runs) "
                "you should pass contrast as an expression using the name of the conditions "
                "as they appear in the design matrices.",
                RuntimeWarning,
                stacklevel=stacklevel,
            )
        con_vals = con_vals * n_runs
    elif len(con_vals) != n_runs:
        raise ContrastError(f"{len(con_vals)} contrasts given, while there are {n_runs} runs.")
    cons = [as_contrast_matrix(c, columns) for c, columns in zip(con_vals, columns_per_run)]
    if all(np.all(c == 0) for c in cons):
        raise ContrastError(
            f"All contrasts provided were null contrasts: {contrast_def!r} has only zero "
            "weights, so it tests nothing."
        )
    return cons
