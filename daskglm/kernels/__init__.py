"""Pure numpy/scipy kernels: every statistic of the GLM, for one block of voxels.

Nothing in this package imports dask, xarray or zarr, nor anything of daskglm
outside it but :mod:`daskglm.errors`.  Every function works on in-memory
numpy arrays of one voxel block (or one time chunk) and is what the dask
orchestration layer maps over blocks.  Modules, bottom to top (each imports
only those before it):

- :mod:`~daskglm.kernels.masker`: nilearn's smoothing and masking of volumes;
- :mod:`~daskglm.kernels.mesh`: the same for surfaces and grayordinates (mesh smoothing);
- :mod:`~daskglm.kernels.resample`: volumes resampled on the fly, with ``resample_img``'s numerics;
- :mod:`~daskglm.kernels.sufficient_stats`: sufficient statistics and their accumulation;
- :mod:`~daskglm.kernels.scaling`: the ``signal_scaling`` dispatch;
- :mod:`~daskglm.kernels.ar`: AR algebra and the 0.01 coefficient grid;
- :mod:`~daskglm.kernels.glm`: OLS, residual lag sums, Yule-Walker, nilearn's whitening;
- :mod:`~daskglm.kernels.gram`: whitened Gram tables, per-voxel AR(p) fits, diagnostics;
- :mod:`~daskglm.kernels.contrast`: effects, variances, statistics, fixed effects;
- :mod:`~daskglm.kernels.fit`: the fit recipe, the packed result layout, ``fit_block``;
- :mod:`~daskglm.kernels.timeseries`: residuals, predictions, r-square;
- :mod:`~daskglm.kernels.permutation`: permutation inference as nilearn's ``permuted_ols``, batched;
- :mod:`~daskglm.kernels.second_level`: second-level OLS and mixed effects for one voxel block.
"""
