"""Contrast definitions: parsing and checking what the user asks for.

A contrast definition is an expression over the design's column names, a 1-D
(t) or 2-D (F) array of weights, or a list of them, one per run.  This module
turns definitions into checked float matrices with nilearn 0.14.1's rules
(expressions evaluated over an identity design, short contrasts zero-padded
with a warning, multi-row t contrasts become F, one contrast for all runs with
a warning).  The numbers computed from a parsed contrast (effects, variances,
statistics, fixed effects) are in :mod:`daskglm.kernels.contrast`.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from .errors import ContrastError

__all__ = [
    "OUTPUT_TYPES",
    "ContrastError",
    "expression_to_contrast_vector",
    "as_contrast_matrix",
    "pad_contrast",
    "contrast_kind",
    "per_run_contrasts",
]

#: The maps a contrast gives, in nilearn's ``output_type`` names.
OUTPUT_TYPES = ("z_score", "stat", "p_value", "effect_size", "effect_variance")


def expression_to_contrast_vector(expression: str, columns: list[str]) -> np.ndarray:
    """Turn an expression over design column names into a contrast vector.

    Same semantics as nilearn: a bare column name selects it, otherwise the
    expression is evaluated with :meth:`pandas.DataFrame.eval` over an identity
    matrix whose columns are the design's.
    """
    columns = list(columns)
    if expression in columns:
        vec = np.zeros(len(columns))
        vec[columns.index(expression)] = 1.0
        return vec
    eye = pd.DataFrame(np.eye(len(columns)), columns=columns)
    try:
        vec = eye.eval(expression, engine="python")
    except Exception as err:  # pandas raises many types here
        names = _unknown_names(expression, columns)
        hint = f" Unknown names: {names}." if names else f" ({type(err).__name__}: {err})"
        raise ContrastError(
            f"The contrast expression {expression!r} is not valid.{hint} "
            f"Available design columns are: {[str(c) for c in columns]}"
        ) from err
    try:
        vec = np.asarray(vec, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ContrastError(
            f"The contrast expression {expression!r} does not evaluate to numeric weights."
        ) from err
    if vec.shape != (len(columns),):
        raise ContrastError(
            f"The contrast expression {expression!r} does not give one weight per design "
            f"column (got shape {vec.shape}). Available design columns are: "
            f"{[str(c) for c in columns]}"
        )
    if not np.all(np.isfinite(vec)):
        raise ContrastError(f"The contrast expression {expression!r} gives non-finite weights {vec}.")
    return vec


def _unknown_names(expression: str, columns: list) -> list[str]:
    """Identifiers of ``expression`` that are not design columns (columns may hold '-', ' ')."""
    rest = expression
    for col in sorted((str(c) for c in columns), key=len, reverse=True):
        if col:
            rest = re.sub(rf"(?<!\w){re.escape(col)}(?!\w)", " ", rest)
    return sorted(set(re.findall(r"[A-Za-z_]\w*", rest)))


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
        ``stacklevel`` of the "One contrast given" warning, counted from this
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
            raise ContrastError("The contrast definition is an empty list.")
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
        warnings.warn(
            f"One contrast given, assuming it for all {n_runs} runs",
            UserWarning,
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
