"""Schema validation of a store on open, before any computation.

Every attribute and array the reader uses is checked for type, range and
shape against the declared sizes (``n_scans``, ``n_regressors``, the mask's
voxel count, the noise model's AR order); group names must be plain children
of the store (no absolute paths, no ``..``).  Every violation is a
:class:`~daskglm.errors.StoreError` naming the store and the field.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from daskglm.errors import StoreError
from daskglm.kernels.fit import NOISE_MODELS, FitOptions

__all__ = ["RUN_VARIABLES", "OPTIONAL_RUN_VARIABLES", "SHARED_VARIABLES", "check_group_name",
           "check_commit", "check_params", "check_columns", "check_affine", "check_run_sizes"]

#: per-run variables: dims and dtype kinds
RUN_VARIABLES = {
    "beta": (("regressor", "voxel"), "f"),
    "dispersion": (("voxel",), "f"),
    "ar_coef": (("ar_lag", "voxel"), "f"),
    "cov_index": (("voxel",), "iu"),
    "cov_table": (("cov_entry", "regressor", "regressor_b"), "f"),
    "design": (("scan", "regressor"), "f"),
    "n_scans": ((), "iu"),
    "n_regressors": ((), "iu"),
    "df_residuals": ((), "iu"),
}
OPTIONAL_RUN_VARIABLES = {
    "acf_before": (("acf_lag", "voxel"), "f"),
    "acf_after": (("acf_lag", "voxel"), "f"),
    "signal_mean": (("voxel",), "f"),
}
SHARED_VARIABLES = {"mask": (("x", "y", "z"), "b")}
#: Bounds of the declared sizes (far above any real fit).
MAX_SCANS, MAX_REGRESSORS, MAX_LAGS, MAX_GRID = 10**7, 10**5, 1000, 4096
#: Largest grid of a mask (a 0.5 mm whole-head grid has ~6e7 voxels).
MAX_MASK_VOXELS = 2**28
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _err(store: str, field: str, what: str) -> StoreError:
    return StoreError(f"{store!r}: {field}: {what}")


def check_group_name(store: str, field: str, name) -> str:
    """A group name that is a plain child of the store (no '/', no '..', not absolute)."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", "..") or ".." in name:
        raise _err(store, field, f"{name!r:.80} is not a group name inside the store (plain child "
                   "names only: no absolute paths, '/' or '..')")
    return name


def check_commit(store: str, attrs: dict, runs_attr: str, keys_attr: str, shared_attr: str):
    """The commit record: run group names, run keys and the shared group name."""
    names, keys = attrs.get(runs_attr), attrs.get(keys_attr)
    if not isinstance(names, list) or not names or len(names) > 10_000:
        raise _err(store, runs_attr, f"must be a non-empty list of group names, got {names!r:.80}")
    if not isinstance(keys, list) or len(keys) != len(names) or not all(isinstance(k, str) for k in keys):
        raise _err(store, keys_attr, f"must be a list of {len(names)} strings, got {keys!r:.80}")
    for i, name in enumerate(names):
        check_group_name(store, f"{runs_attr}[{i}]", name)
    if len(set(names)) != len(names):
        raise _err(store, runs_attr, "names a group twice")
    shared = check_group_name(store, shared_attr, attrs.get(shared_attr))
    return names, keys, shared


def _json_attr(store: str, attrs: dict, name: str):
    text = attrs.get(name)
    if not isinstance(text, str):
        raise _err(store, name, f"missing or not JSON text (got {type(text).__name__})")
    try:
        return json.loads(text)
    except ValueError as err:
        raise _err(store, name, f"is not valid JSON ({err})") from err


def check_params(store: str, attrs: dict, name: str) -> dict:
    """The model parameters: a JSON object with a valid noise model, whitening and scaling."""
    params = _json_attr(store, attrs, name)
    if not isinstance(params, dict):
        raise _err(store, name, f"must be a JSON object, got {type(params).__name__}")
    for key, value in params.items():
        if not _PARAM.match(key):
            raise _err(store, name, f"parameter name {key!r:.40} is not valid")
        if isinstance(value, (dict,)):
            raise _err(store, f"{name}.{key}", "must be a number, string, list or null")
    noise = params.get("noise_model", "ar1")
    valid = list(NOISE_MODELS)
    if noise not in valid:
        raise _err(store, f"{name}.noise_model", f"{noise!r:.40} is not one of {valid}")
    whitening = params.get("whitening", "binned")
    if whitening not in ("binned", "exact"):
        raise _err(store, f"{name}.whitening", f"{whitening!r:.40} is not 'binned' or 'exact'")
    scaling = params.get("signal_scaling", 0)
    if scaling not in (0, 1, [0, 1], False) or scaling is True:
        raise _err(store, f"{name}.signal_scaling", f"{scaling!r:.40} is not 0, 1, [0, 1] or false")
    fwhm = params.get("smoothing_fwhm")
    if fwhm is not None and (isinstance(fwhm, bool) or not isinstance(fwhm, (int, float))
                             or not math.isfinite(fwhm) or fwhm < 0):
        raise _err(store, f"{name}.smoothing_fwhm", f"{fwhm!r:.40} is not null or a finite number >= 0")
    return params


def check_columns(store: str, attrs: dict, name: str, n_runs: int) -> list[list]:
    """Design column names: one list of JSON scalars per run.

    Names may repeat or be empty, as in nilearn's designs; their count is
    checked against each run's regressors by :func:`check_run_sizes`.
    """
    columns = _json_attr(store, attrs, name)
    if not isinstance(columns, list) or len(columns) != n_runs:
        raise _err(store, name, f"must be a list of {n_runs} lists of column names")
    for i, cols in enumerate(columns):
        if not isinstance(cols, list) or not all(
                isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in cols):
            raise _err(store, f"{name}[{i}]", "must be a list of strings or numbers")
    return columns


def check_affine(store: str, attrs: dict, name: str) -> np.ndarray:
    """A 4 x 4 affine of finite numbers."""
    value = _json_attr(store, attrs, name)
    try:
        affine = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as err:
        raise _err(store, name, "is not a 4 x 4 array of numbers") from err
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise _err(store, name, f"must be a 4 x 4 array of finite numbers (shape {affine.shape})")
    return affine


def _scalar(store: str, field: str, value, lo: int, hi: int) -> int:
    value = np.asarray(value)
    if value.shape != () or value.dtype.kind not in "iu" or not lo <= int(value) <= hi:
        raise _err(store, field, f"{value!r:.40} is not an integer in [{lo}, {hi}]")
    return int(value)


def check_run_sizes(store: str, group: str, specs: dict, scalars: dict, n_voxels: int,
                    params: dict, n_columns: int) -> dict:
    """Every array of one run group against the declared sizes; returns the sizes.

    Parameters
    ----------
    specs : dict
        ``{variable: ArraySpec}`` of the group (dims already checked).
    scalars : dict
        The values of ``n_scans``, ``n_regressors``, ``df_residuals``.
    n_voxels : int
        In-mask voxels.
    params : dict
        Checked model parameters.
    n_columns : int
        Length of the run's ``design_columns`` list.
    """
    n = _scalar(store, f"{group}/n_scans", scalars["n_scans"], 1, MAX_SCANS)
    p = _scalar(store, f"{group}/n_regressors", scalars["n_regressors"], 1, MAX_REGRESSORS)
    _scalar(store, f"{group}/df_residuals", scalars["df_residuals"], 0, n)
    if n_columns != p:
        raise _err(store, "design_columns", f"run group {group!r} has {p} regressors but "
                   f"{n_columns} column names")
    options = FitOptions(params.get("noise_model", "ar1"), 0, whitening=params.get("whitening", "binned"))
    lags = max(options.ar_order, 1)
    sizes = {"regressor": p, "regressor_b": p, "scan": n, "voxel": n_voxels, "ar_lag": lags,
             "cov_entry": options.n_cov_tables}
    acf = specs.get("acf_before")
    if acf is not None:
        sizes["acf_lag"] = acf.shape[0]
        if not 1 <= acf.shape[0] <= MAX_LAGS:
            raise _err(store, f"{group}/acf_before", f"{acf.shape[0]} lags is out of range")
    for var, spec in specs.items():
        want = tuple(sizes[d] for d in spec.dims)
        if spec.shape != want:
            raise _err(store, f"{group}/{var}", f"shape {spec.shape} does not match the declared sizes "
                       f"{dict(zip(spec.dims, want))}")
    return sizes


def check_mask_shape(store: str, field: str, shape: tuple) -> None:
    """A 3-D mask of sane size (surface / CIFTI element lists are stored as ``(N, 1, 1)``)."""
    elements = len(shape) == 3 and tuple(shape[1:]) == (1, 1)
    grid_ok = all(1 <= s <= (MAX_MASK_VOXELS if elements else MAX_GRID) for s in shape)
    if len(shape) != 3 or not grid_ok or math.prod(shape) > MAX_MASK_VOXELS:
        raise _err(store, field, f"shape {shape} is not a plausible 3-D grid")
