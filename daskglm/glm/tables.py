"""The tables a GLM is given as files (events, confounds): their bytes, local or at a URL, and TSV/CSV.

Small files read whole by the client: a local path, or an fsspec URL
(``s3://...``) read with :func:`daskglm.io.remote.read_remote_bytes`.  A
``.csv`` file is comma-separated, any other tab-separated, as nilearn reads
events and confounds tables.  The confounds reader
(:mod:`daskglm.glm.confounds`) and the events reader
(:func:`daskglm.glm.design.build_design`) both start here.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd

from daskglm.io.remote import is_url, read_remote_bytes

__all__ = ["table_name", "read_table_bytes", "table_separator", "read_delimited"]


def table_name(source: str | os.PathLike) -> str:
    """The file's name as messages give it: the URL, or the path as given."""
    return source if isinstance(source, str) and is_url(source) else str(Path(source))


def read_table_bytes(source: str | os.PathLike, what: str) -> bytes:
    """The whole content of a table file at a path or URL.

    Parameters
    ----------
    source : str or path
    what : str
        What the file holds (``"events"``, ``"confounds"``), for the message.

    Raises
    ------
    FileNotFoundError
        A local path that does not exist (the message names it).
    """
    if isinstance(source, str) and is_url(source):
        return read_remote_bytes(source)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"The {what} file {str(path)!r} does not exist.")
    return path.read_bytes()


def table_separator(source: str | os.PathLike) -> str:
    """``","`` for a ``.csv`` file, else a tab."""
    return "," if str(source).lower().endswith(".csv") else "\t"


def read_delimited(data: bytes, source: str | os.PathLike) -> pd.DataFrame:
    """A TSV or CSV table with a header row, from the file's bytes (the separator from its name).

    Raises
    ------
    ValueError, pandas.errors.ParserError
        What pandas raises for a table it cannot read (callers name the file).
    """
    return pd.read_csv(io.BytesIO(data), sep=table_separator(source))
