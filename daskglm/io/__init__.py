"""Reading runs and writing images: one module per format, the transport (fsspec URLs) apart.

- :mod:`~daskglm.io.base`: :class:`RunSource`, what a run is to the engine (geometry plus
  chunked scan reads) — the seam for new formats;
- :mod:`~daskglm.io.nifti`: ``.nii`` (memory-mapped) and ``.nii.gz`` (one ISA-L stream) runs,
  :func:`load_image`;
- :mod:`~daskglm.io.nifti_zarr`: NIfTI-Zarr runs (``*.nii.zarr``: the NIfTI header array plus an
  OME-Zarr image; any 4D OME-Zarr or Zarr array), locally or at URLs, any time chunk read independently;
- :mod:`~daskglm.io.nifti_zarr_write`: runs written as NIfTI-Zarr (:func:`to_nifti_zarr`,
  ``daskglm convert``), one pass, atomically;
- :mod:`~daskglm.io.gzindex`: seek indexes into ``.nii.gz`` runs (optional ``rapidgzip``), so
  their time chunks are read independently;
- :mod:`~daskglm.io.gifti`: surface runs (nilearn ``SurfaceImage``, GIfTI hemispheres) and
  their :class:`SurfaceGeometry`;
- :mod:`~daskglm.io.cifti`: CIFTI-2 dense runs (``.dtseries.nii``) and dense scalar maps;
- :mod:`~daskglm.io.remote`: runs at fsspec URLs (object storage, HTTP), streamed, never
  downloaded whole;
- :mod:`~daskglm.io.runs`: :func:`as_run_source`, any run input (paths, URLs, images, arrays)
  as a :class:`RunSource`;
- :mod:`~daskglm.io.views`: views of a run: its kept scans (censoring), its volumes on another grid;
- :mod:`~daskglm.io.timing`: the repetition time, read from a run's header, and every ``t_r`` check;
- :mod:`~daskglm.io.dataarray`: :func:`open_run`, a run as a lazy ``xarray.DataArray``;
- :mod:`~daskglm.io.coords`: xarray coordinates of voxels and volumes (``i, j, k`` and world
  ``x, y, z``);
- :mod:`~daskglm.io.maps`: the in-mask values of effect maps already on a mask's grid (group level);
- :mod:`~daskglm.io.export`: in-mask values back to NIfTI images (eager or lazy), with ASCII-safe
  descriptions;
- :mod:`~daskglm.io.atomic`: a finished directory renamed over its target (NIfTI-Zarr runs,
  beta-series stores).
"""
