"""The repetition time (``t_r``): read from a run's header and checked, in one place.

Every check of a ``t_r`` lives here:

- :func:`check_t_r`: the value, with nilearn's types and messages (a number,
  finite, positive);
- :func:`check_t_r_in_seconds`: a ``t_r`` that makes hours-long runs is taken
  for milliseconds and refused (designs built from events);
- :func:`reconcile_t_r` / :func:`check_runs_t_r`: a given ``t_r`` against the
  one in a run's header (a warning when they differ).

Why in :mod:`daskglm.io` and not in :mod:`daskglm.glm` beside the designs that
use it: :func:`daskglm.io.dataarray.open_run` checks a given ``t_r`` against
the header it reads, and ``io`` is a lower layer than ``glm``
(``tests/test_house.py``), so the one home is at ``io``'s level.  The designs
(:mod:`daskglm.glm.design`), ``open_run`` and the command line
(``daskglm fit --t-r``) all import their checks from here; none needs more
than the standard library, numpy and the header.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from daskglm.errors import DesignError

__all__ = ["MAX_T_R", "header_t_r", "check_t_r", "check_t_r_in_seconds", "reconcile_t_r", "check_runs_t_r"]

#: Longest plausible repetition time (s); a longer one is taken for milliseconds.
MAX_T_R = 100.0
#: Seconds per unit of the NIfTI ``xyzt_units`` time field.
_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


def header_t_r(header) -> float | None:
    """The repetition time in seconds from a NIfTI header (``pixdim[4]`` in its time unit), or None."""
    zooms = header.get_zooms()
    if len(zooms) < 4 or not zooms[3] > 0:
        return None
    unit = header.get_xyzt_units()[1]
    return float(zooms[3]) * _TIME_UNITS.get(unit, 1.0)


def check_t_r(t_r) -> None:
    """Check a given ``t_r``: None, or a finite positive number of seconds.

    nilearn's types and messages (``TypeError`` for a non-number, "'t_r'
    must be positive").

    Parameters
    ----------
    t_r : float, int or None

    Raises
    ------
    TypeError
        Not a number (a bool or a string included).
    daskglm.errors.DesignError
        Not finite, or not positive.
    """
    if t_r is None:
        return
    if isinstance(t_r, bool) or not isinstance(t_r, (int, float, np.integer, np.floating)):
        raise TypeError(f"'t_r' must be of type(s): 'float, int'.\nGot: '{t_r.__class__.__name__}'")
    if not np.isfinite(t_r):
        raise DesignError(f"'t_r' must be a finite number of seconds. Got {t_r} instead.")
    if t_r <= 0:
        raise DesignError(f"'t_r' must be positive. Got {t_r} instead.")


def check_t_r_in_seconds(t_r: float, n_scans: int) -> None:
    """Refuse a ``t_r`` above :data:`MAX_T_R` seconds: almost surely milliseconds.

    Parameters
    ----------
    t_r : float
        A checked (:func:`check_t_r`) repetition time.
    n_scans : int
        Scans of the longest run, for the message.

    Raises
    ------
    daskglm.errors.DesignError
        Naming the run length it gives and the value in seconds.
    """
    if t_r > MAX_T_R:
        raise DesignError(
            f"t_r={t_r:g} s gives a run of {n_scans * float(t_r) / 3600:.3g} hours; is it in milliseconds? "
            f"Give the repetition time in seconds (e.g. t_r={t_r / 1000:g} for "
            f"{n_scans} scans of {t_r:g} ms)."
        )


def reconcile_t_r(t_r: float | None, from_header: float | None, where: str, *, given: str = "t_r=",
                  used_by: str = "the time coordinate", stacklevel: int = 2) -> float | None:
    """The repetition time to use: the given one (warning when it differs from the header's) or the header's.

    Parameters
    ----------
    t_r : float or None
        The given repetition time in seconds (checked by :func:`check_t_r`).
    from_header : float or None
        The header's (:func:`header_t_r`).
    where : str
        The run, for the message.
    given, used_by : str
        How the message names the given value (``"t_r="``, ``"--t-r "``) and what uses it.
    stacklevel : int
        Of the warning, counted from the caller of this function.

    Returns
    -------
    float or None
        ``t_r`` when given (as a float), else ``from_header``.

    Warns
    -----
    UserWarning
        When the two differ by more than 0.1 %.

    Raises
    ------
    TypeError, daskglm.errors.DesignError
        A given ``t_r`` that is not a finite positive number (:func:`check_t_r`).
    """
    if t_r is None:
        return from_header
    check_t_r(t_r)
    t_r = float(t_r)
    if from_header is not None and abs(from_header - t_r) > 1e-3 * max(t_r, from_header):
        warnings.warn(
            f"{given}{t_r:g} differs from the repetition time in the header of {where} "
            f"({from_header:g} s); {used_by} uses {t_r:g} s. Check which one is right.",
            UserWarning, stacklevel=stacklevel + 1,
        )
    return t_r


def check_runs_t_r(runs: Sequence, t_r: float | None, *, given: str = "t_r=", used_by: str = "the design",
                   stacklevel: int = 2) -> None:
    """Warn for each run file whose NIfTI header gives another repetition time than ``t_r``.

    Only NIfTI files are read (their header only); images, GIfTI and CIFTI
    runs are skipped (their readers check the series step).

    Parameters
    ----------
    runs : sequence
        Run paths (other items are skipped).
    t_r : float or None
        The given repetition time; None checks nothing.
    given, used_by : str
        As in :func:`reconcile_t_r`.
    stacklevel : int
        Of the warnings, counted from the caller of this function.
    """
    import nibabel as nib

    if t_r is None:
        return
    for path in runs:
        if not isinstance(path, str):  # images, GIfTI pairs: no repetition time to read here
            continue
        header = getattr(nib.load(path), "header", None)
        if not hasattr(header, "get_zooms"):  # CIFTI, GIfTI: the series step is checked by the reader
            continue
        reconcile_t_r(t_r, header_t_r(header), repr(str(path)), given=given, used_by=used_by,
                      stacklevel=stacklevel + 1)
