"""Data with known ground truth, written by the project itself.

- :mod:`~daskglm.data.fiac`: a FIAC-like two-run dataset (nilearn's two-runs example) and the real fetcher;
- :mod:`~daskglm.data.bids`: a small BIDS + fMRIPrep-like study (volumes, fsaverage5, fsLR CIFTI);
- :mod:`~daskglm.data.events`: both simulators' event tables and task regressors;
- :mod:`~daskglm.data.volumes`: their grids, brain and blob shapes, AR(1) noise and streaming NIfTI writer.
"""
