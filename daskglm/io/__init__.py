"""Reading runs and writing images.

- :mod:`~daskglm.io.base`: :class:`RunSource`, what a run is to the engine
  (geometry plus chunked volume reads) — the seam for new formats;
- :mod:`~daskglm.io.nifti`: ``.nii`` (memory-mapped) and ``.nii.gz`` (one ISA-L
  stream) files, :func:`load_image`;
- :mod:`~daskglm.io.runs`: :func:`as_run_source` for paths, images and arrays;
- :mod:`~daskglm.io.dataarray`: :func:`open_run`, a run as a lazy ``xarray.DataArray``;
- :mod:`~daskglm.io.export`: in-mask values back to NIfTI images.
"""
