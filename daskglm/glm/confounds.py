"""Confounds: the one reader of confounds files, and confounds as columns of a design.

``FirstLevelModel.fit(confounds=...)``, ``daskglm fit --confounds`` and the
study spec of ``daskglm fit-subjects`` all read files with
:func:`read_confounds`, so they accept the same files:

* ``.tsv`` (tabs) and ``.csv`` (commas) with a header row, as fMRIPrep's
  ``*_desc-confounds_timeseries.tsv`` (a file of another suffix whose first
  line is not all numbers is read as a TSV);
* header-less whitespace-separated numbers: SPM's ``rp_*.txt``, FSL's
  ``.par``, AFNI's ``.1D`` (``#`` comments skipped).  Six columns are the
  rigid-body motion parameters ``motion_0`` .. ``motion_5``; other counts
  are ``col_0``, ``col_1``, ...

Files may be local paths or fsspec URLs.  A file with missing values (the
``n/a`` of fMRIPrep's first rows of derivatives, framewise displacement and
DVARS) is refused by name, with nilearn's message first ("Extra regressors
contain NaN values", what nilearn raises for the same file): the two routes
disagreed only on the message (the command line named the file and the
columns, the Python API gave nilearn's words), and both are kept.  Filling
``n/a`` silently would change the model; nilearn's ``load_confounds`` (which
:func:`daskglm.first_level_from_bids` uses) is the way to choose and fill
fMRIPrep's confounds.

:func:`confounds_columns` turns a run's confounds (a table, an array or a
file) into the matrix and names nilearn's design builder adds to a design.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd

from daskglm.errors import ConfoundsError
from daskglm.glm.tables import read_delimited, read_table_bytes, table_name

__all__ = ["read_confounds", "confounds_columns", "MOTION_NAMES"]

#: Names of the columns of a header-less six-column file (rigid-body motion parameters).
MOTION_NAMES = tuple(f"motion_{i}" for i in range(6))


def read_confounds(source: str | os.PathLike) -> pd.DataFrame:
    """A confounds file as a DataFrame, in the formats neuroimagers have (see the module docstring).

    Parameters
    ----------
    source : str or path
        A local path or an fsspec URL.

    Returns
    -------
    pandas.DataFrame
        One row per scan, numeric columns.

    Raises
    ------
    FileNotFoundError
        If a local file does not exist.
    daskglm.errors.ConfoundsError
        If it cannot be read as numbers, is empty, or has missing values; the
        message names the file.
    """
    name = table_name(source)
    data = read_table_bytes(source, "confounds")
    text = data.decode("utf-8", errors="replace")
    try:
        if name.lower().endswith((".tsv", ".csv")) or not _header_less(text):
            table = read_delimited(data, name)
        else:
            values = np.loadtxt(io.StringIO(text), comments="#", ndmin=2, dtype=np.float64)
            names = MOTION_NAMES if values.shape[1] == 6 else [f"col_{i}" for i in range(values.shape[1])]
            table = pd.DataFrame(values, columns=list(names))
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise ConfoundsError(f"Could not read the confounds file {name!r}: {err}") from err
    if table.shape[1] == 0 or table.shape[0] == 0:
        raise ConfoundsError(f"The confounds file {name!r} has no data.")
    bad = [str(c) for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if bad:
        raise ConfoundsError(
            f"The confounds file {name!r} has non-numeric columns: {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}. A file without header must hold only numbers."
        )
    missing = [str(c) for c in table.columns if table[c].isna().any()]
    if missing:
        raise ConfoundsError(
            f"Extra regressors contain NaN values: the confounds file {name!r} has missing values (n/a) "
            f"in: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; fill them (e.g. with 0, "
            "as for fMRIPrep's derivatives) or leave those columns out."
        )
    return table


def _header_less(text: str) -> bool:
    """Whether the first non-comment line is all numbers (a file without header)."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            [float(tok) for tok in line.replace(",", " ").split()]
        except ValueError:
            return False
        return True
    return False


def confounds_columns(confounds, n_scans: int, index: int = 0) -> tuple[np.ndarray, list[str]]:
    """A run's confounds as the matrix and column names of its design.

    Parameters
    ----------
    confounds : DataFrame, array-like, str or path
        A table (its column names kept), an array (columns ``confound_0``,
        ...; nilearn's names) or a file (:func:`read_confounds`).
    n_scans : int
        The run's scans: one row each.
    index : int
        Run number, for messages.

    Returns
    -------
    matrix : ndarray, shape (n_scans, k), float64
    names : list of str

    Raises
    ------
    daskglm.errors.ConfoundsError
        Another number of rows than of scans (nilearn's message first), or a
        file :func:`read_confounds` refuses.
    """
    source = None
    if isinstance(confounds, (str, os.PathLike)):
        source = table_name(confounds)
        confounds = read_confounds(confounds)
    if isinstance(confounds, pd.DataFrame):
        names = [str(c) for c in confounds.columns]
        matrix = confounds.to_numpy(dtype=np.float64)
    else:
        matrix = np.asarray(confounds, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix[:, None]
        names = [f"confound_{i}" for i in range(matrix.shape[1])]
    if matrix.shape[0] != n_scans:
        if source is None:
            detail = f"The confounds of run {index} have {matrix.shape[0]} rows but the run has {n_scans} scans."
        else:
            detail = (f"The confounds file {source!r} has {matrix.shape[0]} rows but run {index} has {n_scans} "
                      "scans; give one row per scan (after the header row of a .tsv / .csv file; rp_*.txt / "
                      ".par / .1D files have no header row).")
        raise ConfoundsError(  # nilearn's message first; checked before the events, as nilearn
            f"Rows in confounds does not match n_scans in run_img at index {index}. {detail}"
        )
    return matrix, names
