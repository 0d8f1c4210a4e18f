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
block; any other input is one task per subject (read, the group masker's
``transform``: nilearn's ``NiftiMasker`` / ``SurfaceMasker``, or
:class:`daskglm.group.maskers.CiftiMasker` for CIFTI-2 maps).
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
    return isinstance(obj, (str, Path, nib.spatialimages.SpatialImage, nib.Cifti2Image)) or is_surface_image(obj)


def _is_model(obj) -> bool:
    from nilearn.glm.first_level import FirstLevelModel

    return isinstance(obj, (FirstLevelModel, DaskFirstLevelModel))


#: What a GIfTI file given as a map is told (one hemisphere, no mesh: not a map the group level can place).
GIFTI_INPUT_ERROR = (
    "{} is a GIfTI file: it holds one hemisphere's values and no mesh. Load the maps as nilearn "
    "SurfaceImages (SurfaceImage(mesh, data={{'left': ..., 'right': ...}})) or give CIFTI-2 .dscalar.nii maps."
)


def _is_gifti(obj) -> bool:
    return isinstance(obj, nib.gifti.GiftiImage) or (
        isinstance(obj, (str, Path)) and str(obj).lower().endswith((".gii", ".gii.gz")))


def _reject_gifti(items, where: str = "second_level_input") -> None:
    """A clear :class:`GroupInputError` for GIfTI files (instead of a type error further on)."""
    single = not isinstance(items, (list, tuple, pd.Series))
    for i, obj in enumerate([items] if single else list(items)):
        if _is_gifti(obj):
            raise GroupInputError(GIFTI_INPUT_ERROR.format(where if single else f"{where}[{i}]"))


def _surface_shape(img) -> tuple:
    return tuple(img.shape)


def _check_surface_images(items, none_design_matrix: bool) -> None:
    """nilearn's checks of a list of SurfaceImages (one map each, one mesh)."""
    from daskglm.io.gifti import SurfaceGeometry

    for img in items:
        shape = _surface_shape(img)
        if len(shape) > 1 and shape[1] != 1:
            raise GroupInputError("List of SurfaceImage objects as 'second_level_input' require all images "
                                  "to be 3D SurfaceImage.")
    first = SurfaceGeometry(items[0].mesh)
    for i, img in enumerate(items[1:], 1):
        if not SurfaceGeometry(img.mesh).same_as(first):
            raise GroupInputError(f"second_level_input[{i}] lies on a different mesh from "
                                  f"second_level_input[0] ({first.describe()}).")
    if none_design_matrix:
        raise GroupInputError("List of SurfaceImage objects as 'second_level_input' require a design matrix "
                              "to be provided.")


def _check_cifti_images(items, none_design_matrix: bool) -> None:
    """One map per CIFTI image, all over the same brain models; files must exist.

    Files are not parsed here (a CIFTI header is the whole grayordinate list,
    ~0.6 s for 91k): their brain models are checked as each map is read.
    """
    from daskglm.group.maskers import cifti_signature

    first = None
    for i, img in enumerate(items):
        if isinstance(img, (str, Path)):
            if not Path(img).exists():
                raise GroupInputError(f"File not found: {str(img)!r}.")
            continue
        if img.shape[0] != 1:
            raise GroupInputError(f"When passing a list of CIFTI maps, each must hold one map. Got "
                                  f"'second_level_input[{i}]' with {img.shape[0]} maps.")
        signature = cifti_signature(img)
        if first is None:
            first = (i, signature)
        elif signature != first[1]:
            raise GroupInputError(f"second_level_input[{i}] is over other CIFTI brain models than "
                                  f"second_level_input[{first[0]}].")
    if none_design_matrix:
        raise GroupInputError("List of CIFTI maps as 'second_level_input' require a design matrix to be "
                              "provided.")


def _surface_columns(img) -> list:
    """A 2-D SurfaceImage's maps, one 1-D SurfaceImage each (nilearn's ``iter_img``)."""
    from nilearn.surface import SurfaceImage

    n = _surface_shape(img)[1]
    return [SurfaceImage(mesh=img.mesh, data={p: np.asarray(d)[:, j] for p, d in img.data.parts.items()})
            for j in range(n)]


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
        _check_image_list(items, design_matrix is None)
        return GroupInput("images", list(items), None, original=items)
    raise GroupInputError(INPUT_TYPE_ERROR.format([type(x) for x in items]))


def _describe_item(obj) -> str:
    return repr(str(obj)) if isinstance(obj, (str, Path)) else f"a {type(obj).__name__}"


def _check_one_kind_of_cifti(items: list) -> None:
    """All maps CIFTI-2 or none (by type or file suffix: nothing is read).

    Raises
    ------
    GroupInputError
        The first map that is not of the first map's kind, named by index and path.
    """
    first = is_cifti(items[0])
    for i, obj in enumerate(items):
        if is_cifti(obj) != first:
            kinds = ("not a CIFTI-2 map", "one") if first else ("a CIFTI-2 map", "not")
            raise GroupInputError(
                f"second_level_input[{i}] ({_describe_item(obj)}) is {kinds[0]} but second_level_input[0] "
                f"({_describe_item(items[0])}) is {kinds[1]}: all maps must be CIFTI-2 (.dscalar.nii images or "
                "files) or none.")


def _check_image_list(items: list, none_design_matrix: bool) -> None:
    """nilearn's checks of a list of maps, by their kind: NIfTI, SurfaceImage or CIFTI (headers only)."""
    _reject_gifti(items)
    if not is_surface_image(items[0]):
        _check_one_kind_of_cifti(items)
    if is_surface_image(items[0]):
        _check_surface_images(items, none_design_matrix)
    elif is_cifti(items[0]):
        _check_cifti_images(items, none_design_matrix)
    else:
        _check_images(items, none_design_matrix)


def _single_map_input(second_level_input, design_matrix) -> GroupInput:
    """One image holding every subject's map: a 4D NIfTI, a 2-D SurfaceImage, a multi-map CIFTI file."""
    from nilearn.image import check_niimg

    if isinstance(second_level_input, (str, Path)) and not Path(second_level_input).exists() \
            and "://" not in str(second_level_input):
        raise GroupInputError(f"File not found: {str(second_level_input)!r} (not a file nor a study store).")
    if isinstance(second_level_input, (str, Path)) and Path(second_level_input).is_dir():
        raise GroupInputError(f"{str(second_level_input)!r} is a directory but not a daskglm study store "
                              "(a root listing 'subjects'); for single-subject fit stores pass a list of "
                              "daskglm.open_model(path) models.")
    if is_surface_image(second_level_input):
        shape = _surface_shape(second_level_input)
        if len(shape) == 1 or shape[1] == 1:
            raise GroupInputError("If a single SurfaceImage object is passed as 'second_level_input',it must "
                                  "be a 3D SurfaceImage.")
        items = _surface_columns(second_level_input)
    elif is_cifti(second_level_input):
        from daskglm.group.maskers import cifti_maps

        items = cifti_maps(second_level_input)
    else:
        items = nib.funcs.four_to_three(check_niimg(second_level_input, ensure_ndim=4))
    if design_matrix is None:
        raise GroupInputError("List of niimgs as 'second_level_input' require a design matrix to be "
                              "provided.")
    return GroupInput("images", items, None, original=second_level_input if is_surface_image(
        second_level_input) else items)


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
    if subjects is not None and not is_study_store(second_level_input, storage_options):
        raise GroupInputError("'subjects' selects subjects of a study store; 'second_level_input' is not one.")
    if is_study_store(second_level_input, storage_options):
        return _store_input(second_level_input, subjects, storage_options)
    if isinstance(second_level_input, pd.DataFrame):
        table = _sorted_table(second_level_input)
        _reject_gifti(table["effects_map_path"], "effects_map_path")
        return GroupInput("dataframe", table["effects_map_path"].tolist(), table["subject_label"].tolist(),
                          table=table, original=table)
    _reject_gifti(second_level_input)
    if isinstance(second_level_input, pd.Series):
        items = second_level_input.to_list()
        _check_image_list(items, design_matrix is None)
        return GroupInput("images", items, None, original=second_level_input)
    if _is_image(second_level_input):
        return _single_map_input(second_level_input, design_matrix)
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
        name = model.design_matrices_[0].columns[0]
        # nilearn's contrast by that name: the first column of that name in each run (names may repeat)
        first = [np.eye(len(dm.columns))[[str(c) for c in dm.columns].index(str(name))]
                 for dm in model.design_matrices_]
        return _model_image(model, first[0] if len(first) == 1 else first, "effect_size")
    if is_surface_image(group.original):  # a 2-D SurfaceImage: nilearn fits the masker on it
        return group.original
    if is_surface_image(group.items[0]):
        from nilearn.image import concat_imgs

        return concat_imgs([_shallow(img) for img in group.items])
    if is_cifti(group.items[0]):
        return group.items[0]
    return mean_img(group.items, copy_header=True)


def effect_items(group: GroupInput, first_level_contrast) -> list:
    """Per-subject images or models for a contrast (DataFrame rows filtered by ``map_name``)."""
    if group.kind == "dataframe":
        table = group.table
        return table[table["map_name"] == first_level_contrast]["effects_map_path"].tolist()
    return group.items


def _shallow(img):
    """A new SurfaceImage on the same arrays: nilearn's maskers and ``concat_imgs`` reshape the data of
    the image they are given (1-D parts become (n, 1)), and the caller's images stay as they were."""
    if not is_surface_image(img):
        return img
    from nilearn.surface import SurfaceImage

    return SurfaceImage(mesh=img.mesh, data=dict(img.data.parts))


def _masked(masker, img) -> np.ndarray:
    return np.asarray(masker.transform(_shallow(img)), dtype=np.float64).ravel()


def _masked_model(masker, model, contrast, output_type) -> np.ndarray:
    return _masked(masker, _model_image(model, contrast, output_type))


def _same_elements(model, masker, space) -> bool:
    """Whether a daskglm model's maps are on the group's elements as they are (no smoothing, resampling)."""
    if not isinstance(model, DaskFirstLevelModel) or masker.smoothing_fwhm is not None:
        return False
    if getattr(masker, "target_affine", None) is not None or getattr(masker, "target_shape", None) is not None:
        return False
    return model.space_.same_elements(space)


def _model_row(model, masker, masker_key, space, contrast, output_type: str, n_voxels: int) -> da.Array:
    if _same_elements(model, masker, space):  # the first-level contrast, in the same graph
        return model.contrast_maps(contrast)[output_type].data
    task = dask.delayed(_masked_model, pure=True)(masker_key, model, contrast, output_type)
    return da.from_delayed(task, (n_voxels,), dtype=np.float64)


def _direct(masker) -> tuple[np.ndarray, np.ndarray] | None:
    """The mask and affine when maps on its grid can be masked by indexing (no smoothing/resampling)."""
    if not isinstance(masker.mask_img_, nib.Nifti1Image):
        return None
    if masker.smoothing_fwhm is not None or masker.target_affine is not None or masker.target_shape is not None:
        return None
    mask_img = masker.mask_img_
    return np.asarray(mask_img.dataobj).astype(bool), np.asarray(mask_img.affine)


def subject_maps(items: list, masker, n_voxels: int, contrast=None, output_type: str = "effect_size",
                 models: bool = False) -> list[da.Array]:
    """One lazy (V,) row per subject on the group mask.

    Images on the mask's grid (no smoothing or resampling) are read and
    indexed directly in their task (what nilearn's masker computes for them);
    others go through the group's masker (nilearn's ``NiftiMasker`` /
    ``SurfaceMasker``, or :class:`daskglm.group.maskers.CiftiMasker`).
    """
    from nilearn.image import check_niimg

    from daskglm.group.maskers import masker_space

    direct = None if models else _direct(masker)
    mask_key = dask.delayed(direct[0]) if direct is not None else None  # one graph key
    masker_key = dask.delayed(masker)  # one graph key, not a copy of the masker (its mask, mesh) per task
    space = masker_space(masker) if models else None
    rows = []
    for item in items:
        if models:
            rows.append(_model_row(item, masker, masker_key, space, contrast, output_type, n_voxels))
            continue
        if direct is None or is_surface_image(item) or is_cifti(item):
            task = dask.delayed(_masked, pure=True)(masker_key, item)
            rows.append(da.from_delayed(task, (n_voxels,), dtype=np.float64))
            continue
        img = check_niimg(item, ensure_ndim=3) if not isinstance(item, (str, Path)) else item
        shape, affine = _geometry(img)
        if direct is not None and shape[:3] == direct[0].shape and np.allclose(affine, direct[1]) \
                and (len(shape) == 3 or shape[3] == 1):
            task = dask.delayed(masked_map, pure=True)(img, mask_key)
        else:
            task = dask.delayed(_masked, pure=True)(masker_key, img)
        rows.append(da.from_delayed(task, (n_voxels,), dtype=np.float64))
    return rows
