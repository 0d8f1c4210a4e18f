"""Data with known ground truth, written by the project itself.

- :mod:`~daskglm.data.fiac`: a FIAC-like two-run dataset (nilearn's two-runs example) and the real fetcher;
- :mod:`~daskglm.data.bids`: a small BIDS + fMRIPrep-like study (volumes, fsaverage5, fsLR CIFTI).
"""
