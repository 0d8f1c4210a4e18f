"""Dask plumbing: how the kernels are scheduled, never what they compute.

- :mod:`~daskglm.graph.resources`: BLAS and malloc limits inside tasks; the active client;
- :mod:`~daskglm.graph.stream`: one streaming pass per run to its sufficient statistics;
- :mod:`~daskglm.graph.state`: :class:`RunFit` and the frozen :class:`FittedState`;
- :mod:`~daskglm.graph.fit`: :func:`build_fit`, voxel-block solves with ``da.blockwise``;
- :mod:`~daskglm.graph.contrast`: contrast graphs, and fixed effects over runs;
- :mod:`~daskglm.graph.timeseries`: the second pass for residuals and predictions.
"""
