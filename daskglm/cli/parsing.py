"""Contrasts given on the command line: ``NAME=DEFINITION`` arguments and JSON files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = ["parse_contrast", "load_contrast_file", "contrasts_from_args", "safe_filename"]

_NAMED = re.compile(r"^\s*([A-Za-z_][\w.+-]*)\s*=(?!=)\s*(.+)$", re.S)


def _parse_value(text: str):
    text = text.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"Contrast {text!r} is not a valid JSON array: {err.msg}.") from err
        return _as_numeric(value, text)
    return text


def _as_numeric(value, source: str):
    """A JSON contrast as a 1-D or 2-D float array (strings are expressions, kept)."""
    import numpy as np

    if isinstance(value, str):
        return value
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise UsageError(f"Contrast {source!r} must be an expression or an array of numbers.") from err
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise UsageError(f"Contrast {source!r} must be a 1-D (t) or 2-D (F) array, got shape {arr.shape}.")
    return arr


def parse_contrast(text: str) -> tuple[str, Any]:
    """``NAME=DEFINITION`` or ``DEFINITION`` -> ``(name, definition)``.

    A definition is an expression over the design's column names
    (``"audio - visual"``) or a JSON array: ``[-1, -1, 1, 1]`` (t) or
    ``[[1, 0], [0, 1]]`` (F).  Without a name, the definition names itself.

    Parameters
    ----------
    text : str
        One ``CONTRAST`` argument.

    Returns
    -------
    name : str
    definition : str or ndarray
        An expression, or a 1-D (t) or 2-D (F) float array.

    Raises
    ------
    daskglm.errors.UsageError
        For an empty contrast or an invalid array.
    """
    match = _NAMED.match(text)
    if match:
        name, definition = match.group(1), match.group(2)
    else:
        name, definition = text.strip(), text
    if not definition.strip():
        raise UsageError(f"Empty contrast in {text!r}.")
    return name, _parse_value(definition)


def load_contrast_file(path: str) -> dict[str, Any]:
    """The contrasts of a JSON file mapping names to definitions (``--contrasts-file``)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"The contrasts file {path!r} does not exist.")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UsageError(f"The contrasts file {path!r} is not valid JSON: {err}.") from err
    if not isinstance(data, dict) or not data:
        raise UsageError(
            f"The contrasts file {path!r} must hold a JSON object mapping names to contrasts, "
            'e.g. {"DSt_minus_SSt": [-1, -1, 1, 1], "audio": "audio - visual"}.'
        )
    return {str(k): _as_numeric(v, f"{k} in {path}") for k, v in data.items()}


def contrasts_from_args(args) -> dict[str, Any]:
    """The contrasts of a command: ``--contrasts-file`` first, then ``CONTRAST`` arguments."""
    contrasts: dict[str, Any] = {}
    if getattr(args, "contrasts_file", None):
        contrasts.update(load_contrast_file(args.contrasts_file))
    for text in getattr(args, "contrast", None) or []:
        name, definition = parse_contrast(text)
        contrasts[name] = definition
    if not contrasts:
        raise UsageError("No contrast given: pass CONTRAST arguments or --contrasts-file.")
    return contrasts


def safe_filename(name: str) -> str:
    """A contrast name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "contrast"
