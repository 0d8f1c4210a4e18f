"""Opening runs and building fits computes nothing (xarray's raise_if_dask_computes idea)."""

from __future__ import annotations

import dask
import numpy as np
import pytest

from daskglm import FirstLevelModel, open_run
from daskglm.io.nifti import FileRunSource
from tests.conftest import load_designs


class ComputeForbidden(RuntimeError):
    pass


def _raising_scheduler(dsk, keys, **kwargs):
    raise ComputeForbidden(f"dask computed {len(keys)} key(s) while a lazy result was expected")


@pytest.fixture
def no_compute():
    with dask.config.set(scheduler=_raising_scheduler):
        yield


def test_raising_scheduler_really_raises(no_compute):
    with pytest.raises(ComputeForbidden):
        dask.array.ones(3).sum().compute()


def test_open_run_reads_only_the_header(fiac_small, no_compute, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("volume data was read while opening a run")

    monkeypatch.setattr(FileRunSource, "read", forbidden)
    monkeypatch.setattr(FileRunSource, "iter_chunks", forbidden)
    run = open_run(fiac_small["func1"], chunks=10)
    assert run.dims == ("x", "y", "z", "time")
    assert run.shape == (14, 16, 14, 80)
    assert run.chunks[3][0] == 10
    assert np.asarray(run.attrs["affine"]).shape == (4, 4)
    assert run.dtype == np.float32


@pytest.mark.parametrize("smoothing_fwhm", [None, 5.0])
def test_fit_and_contrast_graphs_compute_nothing(fiac_small, no_compute, smoothing_fwhm):
    designs = load_designs(fiac_small)
    model = FirstLevelModel(mask_img=fiac_small["mask"], smoothing_fwhm=smoothing_fwhm)
    model.fit([fiac_small["func1"], fiac_small["func2"]], design_matrices=designs)
    results = model.results_
    assert results["beta"].shape[0] == 2
    maps = model.contrast_maps([[-1, -1, 1, 1]])
    assert set(maps.data_vars) == {"effect_size", "effect_variance", "stat", "p_value", "z_score"}
    # asking for concrete images is what triggers computation
    with pytest.raises(ComputeForbidden):
        model.compute_contrast([[-1, -1, 1, 1]])


def test_fit_from_lazy_dataarray_computes_nothing(fiac_small, no_compute):
    run = open_run(fiac_small["func1"])
    model = FirstLevelModel(mask_img=fiac_small["mask"]).fit(
        run, design_matrices=load_designs(fiac_small)[0]
    )
    assert model.results_["dispersion"].shape == (1, int(model.mask_img_.get_fdata().sum()))
