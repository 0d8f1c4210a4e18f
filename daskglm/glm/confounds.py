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

Files may be local paths or fsspec URLs.

fMRIPrep's tables (``*_desc-confounds_timeseries.tsv`` and its ``.json``)
are read the way nilearn's :func:`nilearn.interfaces.fmriprep.load_confounds`
reads them when a ``strategy`` is given: ``read_confounds(path,
strategy=("motion", "wm_csf", "scrub"), scrub=0, fd_threshold=0.5)`` calls
``load_confounds`` itself (its strategies, options, checks, filling and
demeaning) on the table (copied with its ``.json`` sidecar, under the names
fMRIPrep gives them, to a temporary folder where ``load_confounds`` finds them
from a run name: any file name, local or at a URL, works), and returns its confounds with its sample mask (the
scans kept after scrubbing and non-steady-state volumes) in
``DataFrame.attrs["sample_mask"]`` (:mod:`daskglm.glm.sample_masks`), which
``FirstLevelModel.fit`` uses.  ``columns=`` picks columns by name (shell
wildcards allowed: ``"a_comp_cor_0[0-4]"``), of the table or of what the
strategy selected.  :func:`fmriprep_confounds_file` finds a run's table next to
it, as ``load_confounds`` does.

Missing values (``n/a``).  fMRIPrep writes ``n/a`` in the first row of
derivatives, framewise displacement and DVARS.  With a ``strategy``,
``load_confounds`` fills them (the second row's value, then demeaned).
With ``columns`` and no strategy, a first-row ``n/a`` is filled the same way
(the second row's value, as ``load_confounds``; nothing demeaned): picking
``framewise_displacement`` means the load_confounds column.  A whole table
read without strategy or columns, or ``n/a`` elsewhere than in the first row,
is refused by name, with nilearn's message first ("Extra regressors contain
NaN values", what nilearn raises for the same table) and what to do (a
strategy, or columns): filling silently would put all of fMRIPrep's 60-200
columns, their ``n/a`` made up, in the design.

:func:`confounds_columns` turns a run's confounds (a table, an array or a
file) into the matrix and names nilearn's design builder adds to a design.
"""

from __future__ import annotations

import fnmatch
import inspect
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from daskglm.errors import ConfoundsError
from daskglm.glm.sample_masks import SAMPLE_MASK_ATTR, with_sample_mask
from daskglm.glm.tables import read_delimited, read_table_bytes, table_name
from daskglm.io.remote import is_url

__all__ = ["read_confounds", "fmriprep_confounds_file", "load_confounds_options", "confounds_columns",
           "MOTION_NAMES"]

#: Names of the columns of a header-less six-column file (rigid-body motion parameters).
MOTION_NAMES = tuple(f"motion_{i}" for i in range(6))
#: ``load_confounds`` parameters that are not options of a strategy read from one table.
_NOT_OPTIONS = ("img_files", "strategy", "tedana")


def load_confounds_options() -> tuple[str, ...]:
    """The options of nilearn's ``load_confounds`` that :func:`read_confounds` takes with a ``strategy``.

    ``motion``, ``scrub``, ``fd_threshold``, ``std_dvars_threshold``,
    ``wm_csf``, ``global_signal``, ``compcor``, ``n_compcor``, ``ica_aroma``,
    ``demean`` (read from nilearn's signature; ``tedana`` reads tedana's own
    files, not a confounds table).
    """
    from nilearn.interfaces.fmriprep import load_confounds

    return tuple(n for n in inspect.signature(load_confounds).parameters if n not in _NOT_OPTIONS)


def read_confounds(
    source: str | os.PathLike,
    strategy: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    **load_options,
) -> pd.DataFrame:
    """A confounds file as a DataFrame (see the module docstring); fMRIPrep's through ``load_confounds``.

    Parameters
    ----------
    source : str or path
        A local path or an fsspec URL.
    strategy : sequence of str, optional
        nilearn's ``load_confounds`` strategy (``"motion"``, ``"high_pass"``,
        ``"wm_csf"``, ``"global_signal"``, ``"compcor"``, ``"ica_aroma"``,
        ``"scrub"``, ``"non_steady_state"``) for an fMRIPrep confounds table;
        its ``.json`` sidecar (for ``compcor``) is read next to it.
        ``load_confounds`` itself selects, fills and demeans the columns; its
        sample mask goes to ``attrs["sample_mask"]`` (absent when every scan is
        kept).  ``"ica_aroma"`` with ``ica_aroma="full"`` expects the runs to
        be fMRIPrep's ``desc-smoothAROMAnonaggr`` images (not checked here).
    columns : sequence of str, optional
        Keep these columns (names, or shell wildcards such as ``"a_comp_cor_0*"``),
        in this order, of the table or of what ``strategy`` selected.  Without
        a strategy a first-row ``n/a`` in them is set to the second row's value,
        as ``load_confounds`` does.
    **load_options
        ``load_confounds`` options (:func:`load_confounds_options`:
        ``motion="full"``, ``scrub=5``, ``fd_threshold=0.5``, ``demean=True``,
        ...), with a ``strategy`` only.

    Returns
    -------
    pandas.DataFrame
        One row per scan, numeric columns.

    Raises
    ------
    FileNotFoundError
        If a local file does not exist.
    daskglm.errors.ConfoundsError
        If it cannot be read as numbers, is empty, has missing values left
        (module docstring), lacks a column of ``columns``, or ``load_confounds``
        refuses it; the message names the file.
    TypeError
        Options without a strategy, or an option ``load_confounds`` does not have.
    """
    name = table_name(source)
    if strategy is not None:
        table = _load_with_strategy(source, name, strategy, load_options)
    else:
        if load_options:
            raise TypeError(f"load_confounds options {sorted(load_options)} go with a strategy "
                            "(read_confounds(path, strategy=('motion', 'wm_csf'), ...)).")
        table = _read_table(source, name)
    if columns is not None:
        table = _pick_columns(table, columns, name)
        if strategy is None:
            table = _fill_first_row(table)
    if strategy is None:
        _check_missing(table, name, picked=columns is not None)
    return table


def _read_table(source, name: str) -> pd.DataFrame:
    """The whole table, as written (TSV/CSV with a header, or header-less numbers)."""
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
    return table


def _check_missing(table: pd.DataFrame, name: str, picked: bool) -> None:
    missing = [str(c) for c in table.columns if table[c].isna().any()]
    if not missing:
        return
    listed = f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
    if picked:
        raise ConfoundsError(
            f"Extra regressors contain NaN values: the confounds file {name!r} has missing values (n/a) "
            f"after the first row in: {listed}; pick other columns, or fill them yourself."
        )
    raise ConfoundsError(
        f"Extra regressors contain NaN values: the confounds file {name!r} has missing values (n/a) in: "
        f"{listed}. For fMRIPrep's table choose its confounds with a load_confounds strategy "
        "(daskglm fit --confounds-strategy motion wm_csf ...; Python: "
        "daskglm.glm.confounds.read_confounds(path, strategy=...)), which fills them as nilearn does, or "
        "pick columns (--confounds-columns NAME ...; read_confounds(path, columns=[...])), whose "
        "first-row n/a is filled the same way."
    )


def _fill_first_row(table: pd.DataFrame) -> pd.DataFrame:
    """``load_confounds``' filling: a first-row NaN takes the second row's value."""
    if len(table) < 2:
        return table
    first = table.iloc[0].isna().to_numpy()
    if first.any():
        table = table.copy()
        table.iloc[0, first] = table.iloc[1, first]
    return table


def _pick_columns(table: pd.DataFrame, columns: Sequence[str], name: str) -> pd.DataFrame:
    if isinstance(columns, str):
        columns = [columns]
    available = [str(c) for c in table.columns]
    picked: list[str] = []
    for wanted in columns:
        found = [wanted] if wanted in available else fnmatch.filter(available, wanted)
        if not found:
            import difflib

            close = difflib.get_close_matches(wanted, available, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfoundsError(
                f"The confounds file {name!r} has no column {wanted!r}{hint}; its columns: "
                f"{', '.join(available[:12])}{', ...' if len(available) > 12 else '.'}"
            )
        picked += [c for c in found if c not in picked]
    mask = table.attrs.get(SAMPLE_MASK_ATTR)
    out = table.loc[:, picked].copy()
    out.attrs = {}
    return with_sample_mask(out, mask) if mask is not None else out


def _load_with_strategy(source, name: str, strategy, options: dict) -> pd.DataFrame:
    """nilearn's ``load_confounds`` on the table, copied next to a run name fMRIPrep would give it."""
    from nilearn.interfaces.fmriprep import load_confounds

    strategy = (strategy,) if isinstance(strategy, str) else tuple(strategy)
    allowed = load_confounds_options()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"Unknown load_confounds option(s) {unknown}; nilearn's are {list(allowed)}.")
    if "tedana" in strategy:
        raise ConfoundsError("The 'tedana' strategy reads tedana's mixing and metrics files, not a confounds "
                             "table: call nilearn.interfaces.fmriprep.load_confounds on the run.")
    if not strategy:
        raise ConfoundsError(f"An empty confounds strategy selects nothing from {name!r}: leave the "
                             "confounds out instead.")
    data = read_table_bytes(source, "confounds")
    sidecar = _sidecar_bytes(source)
    aroma = "ica_aroma" in strategy and options.get("ica_aroma", "full") == "full"
    with tempfile.TemporaryDirectory(prefix="daskglm-confounds-") as tmp:
        folder = Path(tmp)
        (folder / "sub-0_desc-confounds_timeseries.tsv").write_bytes(data)
        if sidecar is not None:
            (folder / "sub-0_desc-confounds_timeseries.json").write_bytes(sidecar)
        run = folder / f"sub-0_desc-{'smoothAROMAnonaggr' if aroma else 'preproc'}_bold.nii.gz"
        try:
            confounds, sample_mask = load_confounds(str(run), strategy=strategy, **options)
        except (ValueError, KeyError, pd.errors.ParserError) as err:
            text = " ".join(str(err).replace(str(folder / "sub-0_desc-confounds_timeseries"), "").split())
            raise ConfoundsError(f"load_confounds could not use the confounds file {name!r} with strategy "
                                 f"{list(strategy)}: {text}") from err
    return with_sample_mask(confounds, sample_mask)


def _sidecar_bytes(source) -> bytes | None:
    """The ``.json`` next to a confounds table (``load_confounds``' rule: its name with ``tsv`` -> ``json``)."""
    text = str(source)
    if not text.endswith(".tsv"):
        return None
    sidecar = text[: -len(".tsv")] + ".json"
    if is_url(sidecar):
        try:
            return read_table_bytes(sidecar, "confounds sidecar")
        except (FileNotFoundError, OSError):
            return None
    path = Path(sidecar)
    return path.read_bytes() if path.is_file() else None


def fmriprep_confounds_file(run: str | os.PathLike) -> str:
    """The fMRIPrep confounds table of a run, found next to it as ``load_confounds`` finds it.

    Parameters
    ----------
    run : str or path
        A local preprocessed run named as fMRIPrep names it
        (``sub-01_task-x_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz``,
        ``..._bold.dtseries.nii``, ``..._hemi-L_..._bold.func.gii``).

    Returns
    -------
    str
        ``sub-01_task-x_desc-confounds_timeseries.tsv`` (or fMRIPrep's older
        ``_regressors.tsv``) in the run's folder.

    Raises
    ------
    daskglm.errors.ConfoundsError
        None or several candidates (nilearn's message), naming the run.
    """
    from daskglm.compat.nilearn import fmriprep_confounds_path

    try:
        return str(fmriprep_confounds_path(str(run)))
    except ValueError as err:
        raise ConfoundsError(f"No fMRIPrep confounds table found for the run {str(run)!r}: "
                             f"{' '.join(str(err).split())} Give it with --confounds (Python: "
                             "read_confounds(path, strategy=...)).") from err


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
