"""The second streaming pass (``minimize_memory=False``): residuals and predictions to Zarr.

The numbers come from :mod:`daskglm.kernels.timeseries`; each run is read again
chunk by chunk and its per-scan outputs written straight into a Zarr group.
"""

from __future__ import annotations

import numpy as np
from dask import delayed

from daskglm.graph.resources import limit_heap_fragmentation, single_threaded_blas
from daskglm.graph.state import FittedState
from daskglm.io.base import RunSource
from daskglm.kernels.scaling import scale_volumes, scales_volumes, scaling_coefficients

__all__ = ["timeseries_tasks"]


def _stream_timeseries(
    source: RunSource, masker, X, beta, rho, signal_mean, signal_scaling, per_volume,
    residuals_array, predicted_array, chunk: int,
) -> np.ndarray:
    """Second pass over a run: write residuals and predictions, return r-square."""
    from daskglm.kernels.timeseries import TimeseriesAccumulator

    limit_heap_fragmentation()
    a, b = scaling_coefficients(signal_mean, signal_scaling, np.mean(signal_mean))
    acc = TimeseriesAccumulator(X, beta, rho)
    with single_threaded_blas:
        for t0, volumes in source.iter_chunks(chunk, background=False, reuse_buffer=True):
            Y = scale_volumes(masker.transform(volumes), per_volume)
            Y = a * np.asarray(Y, dtype=np.float64) + b
            residuals, predicted = acc.update(Y, t0)
            residuals_array[t0 : t0 + len(Y)] = residuals
            predicted_array[t0 : t0 + len(Y)] = predicted
    return acc.r_square()


def timeseries_tasks(state: FittedState, signal_scaling, group, chunk: int) -> list:
    """Delayed second-pass tasks, one per run, writing into the Zarr ``group``.

    Each task returns the run's r-square (V,); ``group`` gets
    ``run{i}/residuals`` and ``run{i}/predicted``, each (scan, voxel).
    """
    per_volume = scales_volumes(signal_scaling)
    tasks = []
    for i, (source, fit, design) in enumerate(zip(state.sources, state.runs, state.designs)):
        n, n_vox = design.shape[0], fit.beta.shape[1]
        arrays = []
        for name in ("residuals", "predicted"):
            arrays.append(group.create_array(
                f"run{i}/{name}", shape=(n, n_vox), chunks=(chunk, min(n_vox, 65536)),
                dtype="float64", overwrite=True,
            ))
        tasks.append(
            delayed(_stream_timeseries, pure=False)(
                source, state.masker, design.to_numpy(dtype=np.float64), fit.beta, fit.ar_coef,
                fit.signal_mean, signal_scaling, per_volume, arrays[0], arrays[1], chunk,
            )
        )
    return tasks
