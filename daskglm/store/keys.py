"""Resume identity: what identifies a run's fit, so a store can reuse it.

A run's key (:func:`run_key`) hashes its input's identity
(:func:`source_identity`), the model parameters, the design, the mask, the
affine and the chunking.  ``write_dataset(..., resume=True)`` reuses a stored
run group whose key equals the key of a run being written
(:mod:`daskglm.store.zarr`).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from daskglm.graph.state import FittedState

__all__ = ["source_identity", "run_key", "run_keys", "run_sources"]


def _hash_array(a) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def source_identity(source) -> dict[str, Any]:
    """What identifies a run's input, for resuming.

    Files are identified by resolved path, size and modification time (ns);
    in-memory runs by a hash of their content (dask's deterministic token).

    Parameters
    ----------
    source : daskglm.io.base.RunSource
        The run's input.

    Returns
    -------
    dict
        JSON-serialisable identity.
    """
    if hasattr(source, "path") or hasattr(source, "url"):  # local file, or object at a URL
        return dict(source.identity())
    if hasattr(source, "view_identity"):  # a censored or resampled view of a run
        return {**source_identity(source.source), **source.view_identity()}
    from dask.base import tokenize

    return {"name": str(getattr(source, "name", "")), "shape": [int(s) for s in source.shape],
            "content_token": tokenize(source.data)}


def run_key(identity: dict, params: dict, design: np.ndarray, columns, mask: np.ndarray,
            affine: np.ndarray, extra: Any = None) -> str:
    """A hex digest identifying one run's fit: input, parameters, design, mask, geometry.

    Parameters
    ----------
    identity : dict
        The run's input identity (:func:`source_identity`).
    params : dict
        The model parameters (``FirstLevelModel.get_params()``).
    design : ndarray (n_scans, n_regressors)
        The run's design matrix.
    columns : sequence
        The design's column names.
    mask : ndarray of bool
        The analysis mask.
    affine : ndarray (4, 4)
        The runs' affine (rounded to 6 decimals).
    extra : JSON-serialisable, optional
        Anything else the fit depends on (the chunking).

    Returns
    -------
    str
        SHA-256 hex digest.
    """
    record = {
        "identity": identity,
        "params": params,
        "design": _hash_array(np.asarray(design, dtype=np.float64)),
        "columns": [str(c) for c in columns],
        "mask": _hash_array(np.asarray(mask, dtype=bool)),
        "affine": np.round(np.asarray(affine, dtype=np.float64), 6).tolist(),
        "extra": extra,
    }
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_sources(state: FittedState) -> list[dict] | None:
    """Input identity of each run of a fit.

    Parameters
    ----------
    state : daskglm.graph.state.FittedState

    Returns
    -------
    list of dict or None
        One :func:`source_identity` per run; None for a fit opened from a
        store (no sources).
    """
    sources = state.sources
    if sources is None or len(sources) != len(state.runs):
        return None
    return [source_identity(s) for s in sources]


def run_keys(state: FittedState, params: dict, chunks) -> list[str] | None:
    """Per-run keys used to resume: input identity, parameters, design, mask, chunks.

    Parameters
    ----------
    state : daskglm.graph.state.FittedState
    params : dict
        The model parameters (``FirstLevelModel.get_params()``).
    chunks : None, 'auto' or dict
        The model's ``chunks`` parameter (``None`` and ``'auto'`` are the same).

    Returns
    -------
    list of str or None
        One :func:`run_key` per run.  For a fit opened from a store, the
        keys stored with it if every run has one, else None (nothing can be
        reused).
    """
    identities = run_sources(state)
    if identities is None:  # opened from a store: its keys
        stored = state.run_keys
        if stored is not None and len(stored) == len(state.runs) and all(stored):
            return list(stored)
        return None
    chunks = None if chunks in (None, "auto") else dict(chunks)
    return [
        run_key(ident, params, design.to_numpy(dtype=np.float64), list(design.columns),
                state.space.mask, state.space.affine, extra={"chunks": chunks})
        for ident, design in zip(identities, state.designs)
    ]
