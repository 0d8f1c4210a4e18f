"""Per-voxel results of a fit as volumes: xarray DataArrays on the image grid, and the mean image.

The fit keeps its per-voxel arrays flat (the ``voxel`` dim, in the mask's C
order).  :func:`model_volume` puts any of them back on the grid as an
:class:`xarray.DataArray` with dims ``(..., x, y, z)`` (``(..., i, j, k)``
for an oblique affine), voxel indices and world coordinates in mm
(:mod:`daskglm.io.coords`) and CF-style attributes; outside the mask the
value is 0, as in the NIfTI maps, so ``volume.values`` equals
``img.get_fdata()`` of the map :meth:`~daskglm.FirstLevelModel.compute_contrast`
returns.  :func:`mean_image` is the fit's mean image, the background of the
report's plots.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import xarray as xr

__all__ = ["MAP_ATTRS", "contrast_attrs", "contrast_dataset", "model_volume", "mean_image"]

#: CF-style attributes of each contrast output (``long_name``, ``units``).
MAP_ATTRS = {
    "z_score": {"long_name": "z score", "units": "1"},
    "stat": {"long_name": "statistic", "units": "1"},
    "p_value": {"long_name": "p-value (one-sided, upper tail)", "units": "1"},
    "effect_size": {"long_name": "effect size (contrast estimate)"},
    "effect_variance": {"long_name": "variance of the effect size"},
}


def contrast_attrs(name: str, contrast_def, stat_type: str | None, signal_scaling) -> dict:
    """CF-style attributes of the ``name`` map of a contrast."""
    attrs = dict(MAP_ATTRS.get(name, {"long_name": name}))
    contrast_def = _one_line(contrast_def)
    attrs["long_name"] = f"{attrs['long_name']} of contrast {contrast_def}"
    if stat_type:
        attrs["stat_type"] = str(stat_type)
    if name == "stat" and stat_type:
        attrs["long_name"] = f"{stat_type} statistic of contrast {contrast_def!s}"
    if name in ("effect_size", "effect_variance"):
        percent = signal_scaling is not False
        unit = "percent signal change" if percent else "signal units"
        attrs["units"] = unit if name == "effect_size" else f"({unit})^2"
    attrs["contrast"] = str(contrast_def)
    return attrs


def _one_line(contrast_def) -> str:
    """A contrast definition as one line of text (arrays compactly, as in the report)."""
    if isinstance(contrast_def, str):
        return contrast_def
    try:
        arr = np.asarray(contrast_def, dtype=float)
    except (TypeError, ValueError):
        return " ".join(str(contrast_def).split())
    return np.array2string(arr, separator=", ", max_line_width=10_000,
                           formatter={"float_kind": lambda x: f"{x:g}"}).replace("\n", "")


def contrast_dataset(model, maps: dict, q: int, contrast_def, stat_type: str | None,
                     volume: bool = False) -> xr.Dataset:
    """The maps of a contrast (name -> (voxel,) or (q, voxel) array) as a Dataset with attributes.

    ``volume=False``: over the in-mask voxels, with their coordinates;
    ``volume=True``: each map as a volume (:func:`model_volume`).
    """
    dims = {"effect_size": ("voxel",) if q == 1 else ("contrast_dim", "voxel")}
    stat = stat_type or ("F" if q > 1 else "t")
    data = {
        name: xr.DataArray(values, dims=dims.get(name, ("voxel",)), name=name,
                           attrs=contrast_attrs(name, contrast_def, stat, model.signal_scaling))
        for name, values in maps.items()
    }
    if volume:
        return xr.Dataset({name: model_volume(model, arr) for name, arr in data.items()})
    return xr.Dataset(data, coords=model.space_.coords())


def model_volume(model, values, name: str | None = None, fill_value: float = 0.0,
                 attrs: dict | None = None) -> xr.DataArray:
    """Any per-voxel array of a fitted model as a volume :class:`xarray.DataArray`.

    Parameters
    ----------
    model : daskglm.FirstLevelModel
        Fitted, or reopened with :func:`daskglm.open_model`.
    values : xarray.DataArray (with a ``voxel`` dim), dask or numpy array (..., voxel)
        E.g. ``model.results_["beta"]`` or ``model.contrast_maps(c)["z_score"]``.
    name : str, optional
    fill_value : float, default=0.0
        Value outside the mask (0, as the NIfTI maps; ``nan`` to mark it).
    attrs : dict, optional

    Returns
    -------
    xarray.DataArray
        Lazy when ``values`` is dask-backed.
    """
    space = model.space_
    if isinstance(values, xr.DataArray):
        values = values.drop_vars([c for c in values.coords if "voxel" in values.coords[c].dims])
    return space.as_volume(values, name=name, attrs=attrs, fill_value=fill_value)


def mean_image(model) -> nib.Nifti1Image | None:
    """The fit's mean image: each in-mask voxel's signal mean, averaged over runs.

    The mean comes from the fit's streaming pass (the per-run ``signal_mean``
    the store keeps), so nothing is read again.  None for fits whose store
    predates it.
    """
    results = model.results_
    if "signal_mean" not in results:
        return None
    mean = np.asarray(results["signal_mean"].mean("run").values, dtype=np.float32)
    return model.space_.unmask(mean, "daskglm mean image (signal mean over runs)")
