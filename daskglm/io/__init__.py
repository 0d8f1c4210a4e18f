"""Input/output: lazy NIfTI runs, the Zarr results store, NIfTI export."""
