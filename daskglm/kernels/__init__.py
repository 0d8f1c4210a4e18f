"""Pure numpy kernels: sufficient statistics, GLM solves, whitening.

Nothing in this package imports dask. Every function works on in-memory
numpy arrays of one voxel block (or one time chunk) and is what the dask
orchestration layer maps over blocks.
"""
