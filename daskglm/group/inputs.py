"""What a second-level analysis reads: every input nilearn accepts, and study stores.

:func:`resolve_input` turns ``second_level_input`` into a :class:`GroupInput`
(one entry per subject: an image, a fitted first-level model, nilearn's or
daskglm's) with nilearn's checks and messages.  A study store (written by
:func:`daskglm.studies.subjects.fit_subjects`, or any writer of the same layout) is
read through its root's subject list and :func:`daskglm.studies.subjects.open_subject`.

:func:`subject_maps` gives each subject's map (``effect_size`` or
``effect_variance`` of the first-level contrast) as a lazy dask row over the
group mask.  A daskglm model whose mask is the group's (and no smoothing or
resampling) contributes its contrast graph directly, voxel block by voxel
block; any other input is one task per subject (read, nilearn's masker
``transform``).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import pandas as pd

from daskglm.errors import GroupInputError, StoreError
from daskglm.first_level.model import FirstLevelModel as DaskFirstLevelModel
from daskglm.glm.contrasts import expression_to_contrast_vector
from daskglm.io.cifti import is_cifti
from daskglm.io.gifti import is_surface_image
from daskglm.io.maps import masked_map
from daskglm.store.location import Location
from daskglm.store.schema import FORMAT_ATTR
from daskglm.studies.subjects import SUBJECTS_FORMAT, open_subject, read_status

__all__ = ["GroupInput", "resolve_input", "is_study_store", "subject_maps", "sample_map", "INPUT_TYPE_ERROR"]

INPUT_TYPE_ERROR = (
    "'second_level_input' must be either:\n"
    "- a pandas DataFrame,\n"
    "- a Niimg-like object\n"
    "- a pandas Series of Niimg-like object\n"
    "- a list of Niimg-like objects\n"
    "- a list of FirstLevelModel objects\n"
    "- a daskglm study store (path or URL).\n"
    "Got {} instead."
)


@dataclass
class GroupInput:
    """Resolved second-level input.

    Attributes
    ----------
    kind : {'images', 'dataframe', 'models', 'store'}
    items : list
        Images (paths or objects) or fitted first-level models, one per subject
        (all rows of the table for a DataFrame).
    labels : list of str or None
        Subject labels (for confounds and the default design).
    table : pandas.DataFrame or None
        The (sorted) DataFrame input.
    original : object
        What ``second_level_input_`` holds (nilearn's value; the store path for stores).
    """

    kind: str
    items: list
    labels: list | None
    table: pd.DataFrame | None = None
    original: Any = None

    @property
    def uses_models(self) -> bool:
        return self.kind in ("models", "store")


def _is_image(obj) -> bool:
    return isinstance(obj, (str, Path, nib.spatialimages.SpatialImage))


def _is_model(obj) -> bool:
    from nilearn.glm.first_level import FirstLevelModel

    return isinstance(obj, (FirstLevelModel, DaskFirstLevelModel))


#: What a surface input is told (nilearn 0.14.1 fits surface maps at the group level; daskglm not yet).
SURFACE_INPUT_ERROR = (
    "Surface inputs are not supported at the group level yet: {} is {}. daskglm's SecondLevelModel and "
    "non_parametric_inference take volume maps (NIfTI images, or first-level models fitted on volumes); "
    "for surface or CIFTI maps use nilearn's SecondLevelModel / non_parametric_inference."
)


_GEOMETRY_NAMES = {"surface": "surface", "cifti": "CIFTI-2"}


def _surface_kind(obj) -> str | None:
    """What makes ``obj`` a surface input (a SurfaceImage, GIfTI, CIFTI, surface-fitted model), or None."""
    if is_surface_image(obj):
        return "a SurfaceImage"
    if isinstance(obj, nib.gifti.GiftiImage) or (
            isinstance(obj, (str, Path)) and str(obj).lower().endswith((".gii", ".gii.gz"))):
        return "a GIfTI image"
    if is_cifti(obj):
        return "a CIFTI-2 image"
    if isinstance(obj, DaskFirstLevelModel) and obj.__sklearn_is_fitted__() and obj.space_.kind != "volume":
        return f"a FirstLevelModel fitted on {_GEOMETRY_NAMES.get(obj.space_.kind, 'surface')} data"
    if _is_model(obj) and not isinstance(obj, DaskFirstLevelModel):
        from nilearn.maskers import SurfaceMasker

        if isinstance(getattr(obj, "masker_", None), SurfaceMasker):
            return "a FirstLevelModel fitted on surface data"
    return None


def _reject_surfaces(items, where: str = "second_level_input") -> None:
    """A clear :class:`GroupInputError` for surface inputs (instead of a type error further on)."""
    single = not isinstance(items, (list, tuple, pd.Series))
    for i, obj in enumerate([items] if single else list(items)):
        kind = _surface_kind(obj)
        if kind is not None:
            raise GroupInputError(SURFACE_INPUT_ERROR.format(where if single else f"{where}[{i}]", kind))


def is_study_store(path, storage_options: dict | None = None) -> bool:
    """Whether ``path`` is the root of a daskglm study store."""
    if not isinstance(path, (str, Path)) or str(path).endswith((".nii", ".nii.gz", ".img", ".hdr")):
        return False
    loc = Location(path, storage_options)
    try:
        doc = loc.read_json("zarr.json")
    except (OSError, ValueError):
        return False
    return bool(doc) and doc.get("attributes", {}).get(FORMAT_ATTR) == SUBJECTS_FORMAT


def _store_input(store, subjects, storage_options) -> GroupInput:
    loc = Location(store, storage_options)
    listed = read_status(store, storage_options)
    complete = sorted(s for s, entry in listed.items() if entry.get("status", "complete") == "complete")
    if subjects is None:
        chosen = complete
    else:
        chosen = [str(s)[4:] if str(s).startswith("sub-") else str(s) for s in subjects]
        missing = [s for s in chosen if s not in complete]
        if missing:
            raise StoreError(f"Subjects {missing} are not complete subjects of the store {loc.url!r}; "
                             f"it has {complete}.")
    if len(chosen) < 2:
        raise GroupInputError(f"A second level model requires at least two subjects; the store "
                              f"{loc.url!r} gives {chosen}.")
    models = []
    for sid in chosen:
        model = open_subject(store, sid, storage_options=storage_options)
        model.subject_label = f"sub-{sid}"
        models.append(model)
    return GroupInput("store", models, [m.subject_label for m in models], original=str(store))


def _check_models(models, none_confounds: bool) -> None:
    for idx, model in enumerate(models):
        if not model.__sklearn_is_fitted__():
            raise GroupInputError(f"Model {model.subject_label} at index {idx} has not been fit yet.")
        if not none_confounds and model.subject_label is None:
            raise GroupInputError(
                "In case confounds are provided, first level objects need to provide the attribute "
                f"'subject_label' to match rows appropriately.\nModel at idx {idx} does not provide it. "
                "To set it, you can do first_level.subject_label = '01'"
            )


def _geometry(img) -> tuple[tuple, np.ndarray]:
    """Shape and affine of an image or path, from the header only."""
    if isinstance(img, (str, Path)):
        if not Path(img).exists():
            raise GroupInputError(f"File not found: {str(img)!r}.")
        img = nib.load(img)
    return tuple(img.shape), np.asarray(img.affine)


def _check_images(images, none_design_matrix: bool) -> None:
    """nilearn's checks of a list of images, on the headers (no data is read)."""
    from nilearn.image import check_niimg

    geometry = []
    for i, img in enumerate(images):
        if not isinstance(img, (str, Path)):
            img = check_niimg(img, atleast_4d=False)
        shape, affine = _geometry(img)
        if len(shape) > 4 or (len(shape) == 4 and len(images) > 1 and shape[3] != 1):
            raise GroupInputError("When passing a list of Nifti image, each image must be 3D, or 4D with "
                                  f"single volume. Got 'second_level_input[{i}].shape={(*shape, 1)[:4]}'.")
        geometry.append((shape[:3], affine))
    for i, (shape, affine) in enumerate(geometry[1:], 1):
        if shape != geometry[0][0] or not np.allclose(affine, geometry[0][1]):
            raise GroupInputError(f"Following field of view errors were detected:\n- img_#0 and img_#{i} do not "
                                  f"have the same shape ({geometry[0][0]} vs {shape}) or affine.")
    if none_design_matrix:
        raise GroupInputError("List of niimgs as 'second_level_input' require a design matrix to be provided.")


def _sorted_table(table: pd.DataFrame) -> pd.DataFrame:
    for col in ("subject_label", "map_name", "effects_map_path"):
        if col not in table.columns:
            raise GroupInputError("'second_level_input' DataFrame must have columns 'subject_label', "
                                  "'map_name' and 'effects_map_path'.")
    if not all(isinstance(v, str) for v in table["subject_label"].tolist()):
        raise GroupInputError("'subject_label' column must contain only strings.")
    columns = table.columns.tolist()
    rows = sorted(table.values, key=operator.itemgetter(columns.index("subject_label")))
    return pd.DataFrame(rows, columns=columns)


def _list_input(items: list, confounds, design_matrix) -> GroupInput:
    if len(items) < 2:
        raise GroupInputError("A second level model requires a list with at least two first level models "
                              "or niimgs or surface images.")
    first = items[0]
    for idx, obj in enumerate(items):
        same = isinstance(obj, type(first)) or (_is_image(obj) and _is_image(first)) or (
            _is_model(obj) and _is_model(first))
        if not same:
            raise GroupInputError(f"Elements of 'second_level_input' must be of the same type. "
                                  f"Got object type {type(obj)} at idx {idx}.")
    if _is_model(first):
        _check_models(items, confounds is None)
        return GroupInput("models", list(items), [m.subject_label for m in items], original=items)
    if _is_image(first):
        _check_images(items, design_matrix is None)
        return GroupInput("images", list(items), None, original=items)
    raise GroupInputError(INPUT_TYPE_ERROR.format([type(x) for x in items]))


def resolve_input(second_level_input, confounds=None, design_matrix=None, subjects=None,
                  storage_options: dict | None = None) -> GroupInput:
    """Check ``second_level_input`` as nilearn does and resolve it (see module docstring).

    Raises
    ------
    GroupInputError
        Wrong types (a :class:`TypeError`) and unusable values.
    """
    if design_matrix is not None and not isinstance(design_matrix, (str, Path, pd.DataFrame)):
        raise GroupInputError("'design_matrix' must be a str, pathlib.Path or a pandas.DataFrame.\n"
                              f"Got {design_matrix.__class__.__name__}")
    if not isinstance(second_level_input, pd.DataFrame):
        _reject_surfaces(second_level_input)
    if subjects is not None and not is_study_store(second_level_input, storage_options):
        raise GroupInputError("'subjects' selects subjects of a study store; 'second_level_input' is not one.")
    if is_study_store(second_level_input, storage_options):
        group = _store_input(second_level_input, subjects, storage_options)
        _reject_surfaces(group.items, "the study store's subject")
        return group
    if isinstance(second_level_input, pd.DataFrame):
        table = _sorted_table(second_level_input)
        _reject_surfaces(table["effects_map_path"], "effects_map_path")
        return GroupInput("dataframe", table["effects_map_path"].tolist(), table["subject_label"].tolist(),
                          table=table, original=table)
    if isinstance(second_level_input, pd.Series):
        items = second_level_input.to_list()
        _check_images(items, design_matrix is None)
        return GroupInput("images", items, None, original=second_level_input)
    if _is_image(second_level_input):
        from nilearn.image import check_niimg

        if isinstance(second_level_input, (str, Path)) and not Path(second_level_input).exists() \
                and "://" not in str(second_level_input):
            raise GroupInputError(f"File not found: {str(second_level_input)!r} (not a file nor a study store).")
        if isinstance(second_level_input, (str, Path)) and Path(second_level_input).is_dir():
            raise GroupInputError(f"{str(second_level_input)!r} is a directory but not a daskglm study store "
                                  "(a root listing 'subjects'); for single-subject fit stores pass a list of "
                                  "daskglm.open_model(path) models.")
        img = check_niimg(second_level_input, ensure_ndim=4)
        if design_matrix is None:
            raise GroupInputError("List of niimgs as 'second_level_input' require a design matrix to be "
                                  "provided.")
        items = nib.funcs.four_to_three(img)
        return GroupInput("images", items, None, original=items)
    if isinstance(second_level_input, list):
        return _list_input(second_level_input, confounds, design_matrix)
    raise GroupInputError(INPUT_TYPE_ERROR.format(type(second_level_input)))


# ---------------------------------------------------------------- the maps
def _model_image(model, contrast, output_type: str):
    if isinstance(contrast, str) and not isinstance(model, DaskFirstLevelModel):
        # nilearn's models evaluate string contrasts as code: parse them here, one vector per run
        contrast = [expression_to_contrast_vector(contrast, [str(c) for c in dm.columns])
                    for dm in model.design_matrices_]
    return model.compute_contrast(contrast, output_type=output_type)


def sample_map(group: GroupInput):
    """The image nilearn fits the masker on (mean image, or the first model's first-column effect)."""
    from nilearn.image import mean_img

    if group.kind == "dataframe":
        return group.table["effects_map_path"][0]
    if group.uses_models:
        model = group.items[0]
        return _model_image(model, model.design_matrices_[0].columns[0], "effect_size")
    return mean_img(group.items, copy_header=True)


def effect_items(group: GroupInput, first_level_contrast) -> list:
    """Per-subject images or models for a contrast (DataFrame rows filtered by ``map_name``)."""
    if group.kind == "dataframe":
        table = group.table
        return table[table["map_name"] == first_level_contrast]["effects_map_path"].tolist()
    return group.items


def _masked(masker, img) -> np.ndarray:
    return np.asarray(masker.transform(img), dtype=np.float64).ravel()


def _masked_model(masker, model, contrast, output_type) -> np.ndarray:
    return _masked(masker, _model_image(model, contrast, output_type))


def _same_voxels(model, masker) -> bool:
    if not isinstance(model, DaskFirstLevelModel) or masker.smoothing_fwhm is not None:
        return False
    if masker.target_affine is not None or masker.target_shape is not None:
        return False
    group_mask = np.asarray(masker.mask_img_.dataobj).astype(bool)
    space = model.space_
    return space.mask.shape == group_mask.shape and np.array_equal(space.mask, group_mask) and np.allclose(
        space.affine, masker.mask_img_.affine)


def _model_row(model, masker, contrast, output_type: str, n_voxels: int) -> da.Array:
    if _same_voxels(model, masker):  # the first-level contrast, in the same graph
        return model.contrast_maps(contrast)[output_type].data
    task = dask.delayed(_masked_model, pure=True)(masker, model, contrast, output_type)
    return da.from_delayed(task, (n_voxels,), dtype=np.float64)


def _direct(masker) -> tuple[np.ndarray, np.ndarray] | None:
    """The mask and affine when maps on its grid can be masked by indexing (no smoothing/resampling)."""
    if masker.smoothing_fwhm is not None or masker.target_affine is not None or masker.target_shape is not None:
        return None
    mask_img = masker.mask_img_
    return np.asarray(mask_img.dataobj).astype(bool), np.asarray(mask_img.affine)


def subject_maps(items: list, masker, n_voxels: int, contrast=None, output_type: str = "effect_size",
                 models: bool = False) -> list[da.Array]:
    """One lazy (V,) row per subject on the group mask.

    Images on the mask's grid (no smoothing or resampling) are read and
    indexed directly in their task (what nilearn's masker computes for them);
    others go through nilearn's masker.
    """
    from nilearn.image import check_niimg

    direct = None if models else _direct(masker)
    mask_key = dask.delayed(direct[0]) if direct is not None else None  # one graph key
    rows = []
    for item in items:
        if models:
            rows.append(_model_row(item, masker, contrast, output_type, n_voxels))
            continue
        img = check_niimg(item, ensure_ndim=3) if not isinstance(item, (str, Path)) else item
        shape, affine = _geometry(img)
        if direct is not None and shape[:3] == direct[0].shape and np.allclose(affine, direct[1]) \
                and (len(shape) == 3 or shape[3] == 1):
            task = dask.delayed(masked_map, pure=True)(img, mask_key)
        else:
            task = dask.delayed(_masked, pure=True)(masker, img)
        rows.append(da.from_delayed(task, (n_voxels,), dtype=np.float64))
    return rows
