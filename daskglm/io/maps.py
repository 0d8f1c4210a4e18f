"""Effect maps already on a mask's grid: their in-mask values (a dask task of the group level)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["masked_map"]


def masked_map(img, mask: np.ndarray) -> np.ndarray:
    """In-mask values (float64, the mask's C order) of a 3D (or single-volume 4D) image or path.

    What nilearn's ``NiftiMasker.transform`` returns for an image on the
    mask's grid without smoothing; kept in a light module so that dask
    workers do not import nilearn to run it.
    """
    if isinstance(img, (str, Path)):
        img = nib.load(img)
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4:
        data = data[..., 0]
    return np.asarray(data[mask], dtype=np.float64)
