"""Two runs of unequal widths, and the file surgery of the store tests.

The runs (60 and 80 scans on a 6 x 5 x 4 grid whose event designs have 2 and
3 conditions, so the runs differ in scans and in regressors) are the
``unequal`` fixture of ``tests/conftest.py``; a good two-run OLS store of them
is ``pristine``, copied fresh for each test as ``store``.  The helpers below
compute a contrast's z map quietly, read and rewrite a store's ``zarr.json``
documents and list an array's chunk files.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

SHAPE = (6, 5, 4)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
T_R = 2.0


def _events(conditions, n_scans, seed):
    onsets = np.arange(4, n_scans * T_R - 20, 12.0)
    return pd.DataFrame({"onset": onsets, "duration": 4.0,
                         "trial_type": [conditions[i % len(conditions)] for i in range(len(onsets))]})


def unequal_runs() -> dict:
    """Runs, design matrices and an all-ones mask (``runs``, ``designs``, ``mask``)."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    rng = np.random.default_rng(11)
    runs, designs = [], []
    for n, conds, seed in ((60, ["a", "b"], 1), (80, ["a", "b", "c"], 2)):
        ev = _events(conds, n, seed)
        X = make_first_level_design_matrix(np.arange(n) * T_R, ev, hrf_model="glover",
                                           drift_model="cosine", high_pass=0.01)
        signal = X.to_numpy() @ rng.normal(0, 2, (X.shape[1], int(np.prod(SHAPE))))
        noise = rng.normal(0, 1, (n, int(np.prod(SHAPE))))
        bold = 100 + signal + noise
        runs.append(nib.Nifti1Image(bold.T.reshape(*SHAPE, n).astype(np.float64), AFFINE))
        designs.append(X)
    mask = nib.Nifti1Image(np.ones(SHAPE, dtype=np.uint8), AFFINE)
    return {"runs": runs, "designs": designs, "mask": mask}


def _z(model, contrast="a - b"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(model.compute_contrast(contrast).get_fdata())


def _root(store: Path) -> dict:
    return json.loads((store / "zarr.json").read_text())


def _run_group(store: Path, i: int = 0) -> Path:
    return store / _root(store)["attributes"]["daskglm_runs"][i]


def _chunks(array_dir: Path) -> list[Path]:
    return sorted(p for p in (array_dir / "c").rglob("*") if p.is_file())


def _set_root_attr(store: Path, name: str, value) -> None:
    meta = _root(store)
    meta["attributes"][name] = value
    (store / "zarr.json").write_text(json.dumps(meta))


def _set_param(store: Path, name: str, value) -> None:
    params = json.loads(_root(store)["attributes"]["model_params"])
    params[name] = value
    _set_root_attr(store, "model_params", json.dumps(params))
