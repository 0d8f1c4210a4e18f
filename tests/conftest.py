"""Shared fixtures: small generated FIAC-like datasets (session-scoped, on disk)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from daskglm.datasets import make_fiac_like


@pytest.fixture(scope="session")
def fiac_small(tmp_path_factory):
    """Two .nii.gz runs of 14x16x14 voxels x 80 scans with the FIAC design."""
    out = tmp_path_factory.mktemp("fiac_small")
    return make_fiac_like(out, shape=(14, 16, 14), n_scans=80, seed=1)


@pytest.fixture(scope="session")
def fiac_small_nii(tmp_path_factory):
    """Same layout, uncompressed .nii, different shape and seed."""
    out = tmp_path_factory.mktemp("fiac_small_nii")
    return make_fiac_like(out, shape=(11, 13, 9), n_scans=70, seed=2, compress=False)


def load_named_design(path) -> pd.DataFrame:
    """A simulated design matrix (``.npz``) with its column names."""
    with np.load(path) as npz:
        return pd.DataFrame(npz["X"], columns=[str(c) for c in npz["columns"]])


def load_named_designs(data: dict) -> list[pd.DataFrame]:
    """Both runs' design matrices with their column names."""
    return [load_named_design(data[f"design_matrix{i}"]) for i in (1, 2)]


def load_designs(data: dict) -> list[pd.DataFrame]:
    """The dataset's design matrices as the seed example loads them."""
    return [pd.DataFrame(np.load(data[f"design_matrix{i}"])["X"]) for i in (1, 2)]


@pytest.fixture(autouse=True)
def _quiet_known_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*padded with zeros.*")
        warnings.filterwarnings("ignore", message=".*One contrast given.*")
        warnings.filterwarnings("ignore", message=".*The same contrast will be used.*")
        warnings.filterwarnings("ignore", message=".*approximate fixed effects.*")
        yield
