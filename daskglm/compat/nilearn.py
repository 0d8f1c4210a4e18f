"""nilearn behind one door: the supported version range and every private nilearn helper daskglm uses.

daskglm re-implements nilearn's GLM API and keeps nilearn's checks, messages
and BIDS queries by calling nilearn's own helpers.  Many of them are private
(``nilearn._utils...``, ``nilearn.glm._base``, underscore-named functions of
``nilearn.glm.first_level.first_level``) or live in modules nilearn does not
document (``nilearn.interfaces.bids.utils``, ``nilearn.interfaces.bids.query``,
``nilearn.maskers.masker_validation``, ``nilearn.surface.surface``,
``nilearn.glm.io``).  This module is the only one in daskglm that imports
them: each gets a small wrapper named for what it does, so a nilearn release
that moves or changes one breaks here, in one place, and
``tests/test_house.py`` keeps it so (no private and no undocumented nilearn
module imported anywhere else).

No wrapper imports nilearn's submodules at module level: importing this module
costs the import of the top-level ``nilearn`` package (well under a
millisecond) and runs :func:`check_nilearn_version`, so a nilearn outside
:data:`NILEARN_REQUIREMENT` fails with one line
(:class:`~daskglm.errors.NilearnVersionError`; ``daskglm: error: ...`` and exit
status 2 on the command line).  The check runs wherever this module is
imported, which is at import time of:

- the estimator (:mod:`daskglm.first_level.model`: ``FirstLevelModel``,
  ``open_model``) and :mod:`daskglm.first_level.fixed_effects`;
- the group level (:mod:`daskglm.group`);
- the studies (:mod:`daskglm.studies.subjects`, :mod:`daskglm.studies.bids.first_level`,
  :mod:`daskglm.studies.bids.study`);
- the command line's parser (:mod:`daskglm.cli.parser`, which imports every
  command; :func:`daskglm.cli.main` imports it and reports the error).

That is every public name of ``daskglm`` but ``open_run`` (which meets
nilearn only in the ``SurfaceImage`` a caller made with their own nilearn)
and ``to_nifti_zarr`` (which uses no nilearn),
and ``tests/compat/test_nilearn.py`` checks it.  It is enough because the
other modules that call nilearn (the simulators in ``data/``,
``glm/design.py``, ``io/gifti.py``, ``space/``, ``store/geometry.py``,
``reporting/``) call only its documented API, inside functions, and are
reached through those entry points; imported on their own, they skip the
check (an unsupported nilearn then fails with nilearn's own error where a
call needs something it lacks).  ``import daskglm`` stays free of nilearn.

daskglm never assigns to an attribute of a nilearn module or object at run time.
"""

from __future__ import annotations

from typing import Any

import nilearn
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from daskglm.errors import NilearnVersionError

__all__ = [
    "NILEARN_MIN_VERSION", "NILEARN_MAX_VERSION", "NILEARN_REQUIREMENT", "NILEARN_SPECIFIER",
    "check_nilearn_version",
    "check_params", "check_parameter_in_allowed", "load_tables", "contrasts_as_dict",
    "clean_contrast_name", "pad_contrast", "contrast_value", "check_group_confounds",
    "check_mask_fits_images", "embedded_masker",
    "bids_entities", "create_bids_filename", "surface_map_filename", "bids_files_filter",
    "check_first_level_from_bids_args", "split_confounds_kwargs", "list_valid_subjects",
    "report_found_files", "check_bids_image_list", "find_events_files", "check_confounds_files",
    "check_masks_files", "check_repetition_time", "check_slice_time_ref", "infer_repetition_time",
    "infer_slice_timing_start_time", "write_gifti_data", "fmriprep_confounds_path",
]

#: Lowest supported nilearn (the one CI tests; nilearn's own test suites run against daskglm on it).
NILEARN_MIN_VERSION = "0.14.1"
#: First nilearn release *not* supported: the private helpers below may change in any minor release.
NILEARN_MAX_VERSION = "0.15"
#: The requirement, as written in pyproject.toml's ``[project] dependencies``.
NILEARN_REQUIREMENT = f"nilearn>={NILEARN_MIN_VERSION},<{NILEARN_MAX_VERSION}"
#: :data:`NILEARN_REQUIREMENT`'s version specifiers, as pip reads them.
NILEARN_SPECIFIER = SpecifierSet(f">={NILEARN_MIN_VERSION},<{NILEARN_MAX_VERSION}")


def check_nilearn_version(version: str | None = None) -> None:
    """Raise if the installed nilearn is outside :data:`NILEARN_REQUIREMENT`.

    The version is judged as pip judges an installed distribution against
    the requirement (PEP 440, :mod:`packaging`; pre-releases allowed when
    inside the range): ``0.14.2rc1``, ``0.14.2.dev3`` and ``0.14.1+local`` are
    in; ``0.14.1rc1`` and ``0.14.1.dev3`` come *before* 0.14.1 and are out, as
    is ``0.15.0rc1`` (a pre-release of the excluded 0.15).

    Parameters
    ----------
    version : str, optional
        The version to check; default ``nilearn.__version__``.

    Raises
    ------
    NilearnVersionError
        An :class:`ImportError` whose message is one line naming both versions
        and the ``pip`` command that fixes the environment (also for a
        version string that is not a PEP 440 version).
    """
    version = nilearn.__version__ if version is None else version
    try:
        supported = NILEARN_SPECIFIER.contains(Version(str(version)), prereleases=True)
    except InvalidVersion:
        supported = False
    if supported:
        return
    raise NilearnVersionError(
        f"daskglm needs {NILEARN_REQUIREMENT} (it calls nilearn helpers that change between minor "
        f"releases) but nilearn {version} is installed; run: pip install '{NILEARN_REQUIREMENT}'")


check_nilearn_version()


# --------------------------------------------------------------------- parameter checks and tables
def check_params(params: dict[str, Any]) -> None:
    """nilearn's type checks of its shared parameters (``nilearn._utils.param_validation.check_params``).

    ``params`` maps parameter names to values (``locals()`` or an estimator's
    ``__dict__``); the names nilearn knows are checked, with nilearn's errors.
    """
    from nilearn._utils.param_validation import check_params as _check

    _check(params)


def check_parameter_in_allowed(value: Any, allowed: list, name: str) -> None:
    """nilearn's ``ValueError`` when ``value`` is not one of ``allowed`` (``check_parameter_in_allowed``)."""
    from nilearn._utils.param_validation import check_parameter_in_allowed as _check

    _check(value, allowed, name)


def load_tables(tables, name: str) -> list:
    """Tables (DataFrames, ``.csv`` / ``.tsv`` paths, arrays) as DataFrames (``check_and_load_tables``)."""
    from nilearn._utils.glm import check_and_load_tables

    return check_and_load_tables(tables, name)


def contrasts_as_dict(contrasts) -> dict | None:
    """Contrast definitions as ``{name: definition}`` (nilearn's ``coerce_to_dict``).

    A string or array is named by itself; a list gives one entry per item;
    ``None`` stays ``None``.
    """
    from nilearn._utils.glm import coerce_to_dict

    return coerce_to_dict(contrasts)


# --------------------------------------------------------------------- contrasts and group level
def clean_contrast_name(name: str) -> str:
    """A contrast name as nilearn writes it into BIDS file names (``"a - b"`` -> ``"aMinusB"``)."""
    from nilearn.glm._base import _clean_contrast_name

    return _clean_contrast_name(name)


def pad_contrast(con_val, theta, stat_type: str):
    """A contrast padded with zeros to the design's columns, as nilearn (``nilearn.glm._utils.pad_contrast``)."""
    from nilearn.glm._utils import pad_contrast as _pad

    return _pad(con_val, theta, stat_type)


def contrast_value(second_level_contrast, design_matrix):
    """nilearn's second-level contrast vector of a non-string definition (``_get_con_val``).

    ``None`` with a one-column design gives ``[1]``; arrays are checked
    against the design (nilearn's errors).
    """
    from nilearn.glm.second_level.second_level import _get_con_val

    return _get_con_val(second_level_contrast, design_matrix)


def check_group_confounds(confounds) -> None:
    """nilearn's checks of a second-level ``confounds`` table (``subject_label`` column, types)."""
    from nilearn.glm.second_level.second_level import _check_confounds

    _check_confounds(confounds)


def check_mask_fits_images(mask_img, images) -> None:
    """nilearn's error when a mask and images are of different kinds (volume / surface)."""
    from nilearn._utils.masker_validation import check_compatibility_mask_and_images

    check_compatibility_mask_and_images(mask_img, images)


def embedded_masker(estimator, masker_type: str = "nii"):
    """The masker nilearn builds from an estimator's masking parameters (``check_embedded_masker``)."""
    from nilearn.maskers.masker_validation import check_embedded_masker

    return check_embedded_masker(estimator, masker_type)


def write_gifti_data(data, path) -> None:
    """One mesh part's values written as a GIfTI data file, as nilearn writes them.

    nilearn's ``data_to_gifti`` (``nilearn.surface.surface``, a module nilearn
    does not document): ``float64`` stored as ``float32``, wider or unsigned
    integers as ``int32`` / ``uint8``, one data array.

    Parameters
    ----------
    data : ndarray
        The part's values (one per vertex).
    path : str or path
        The ``.func.gii`` / ``.gii`` file to write.
    """
    from nilearn.surface.surface import data_to_gifti

    data_to_gifti(data, path)


# --------------------------------------------------------------------- BIDS names
def bids_entities() -> dict[str, list[str]]:
    """nilearn's BIDS entities: ``{"raw": [...], "derivatives": [...]}`` in BIDS order."""
    from nilearn.interfaces.bids.utils import bids_entities as _entities

    return _entities()


def create_bids_filename(fields: dict, entities_to_include: list[str]) -> str:
    """A BIDS file name from ``{"prefix", "suffix", "extension", "entities"}`` (nilearn's order)."""
    from nilearn.interfaces.bids.utils import create_bids_filename as _create

    return _create(fields, entities_to_include)


def surface_map_filename(filename: str, hemi: str, n_vertices: int) -> str:
    """nilearn's per-hemisphere GIfTI name of a map (``hemi-L``/``hemi-R`` and ``den-<n>`` added)."""
    from nilearn.glm.io import _generate_filename_surface_file

    return _generate_filename_surface_file(filename, hemi, n_vertices)


# --------------------------------------------------------------------- first_level_from_bids pieces
def bids_files_filter(task_label: str, space_label: str | None = None, supported_filters: list | None = None,
                      extra_filter: list | None = None, verbose: int = 0) -> list[tuple[str, str]]:
    """The ``(entity, label)`` filters nilearn's ``first_level_from_bids`` queries with.

    ``task``, then ``space`` (if given), then the ``extra_filter`` entries
    whose entity is in ``supported_filters`` (the others are skipped, with
    nilearn's warning when ``verbose``).
    """
    from nilearn.glm.first_level.first_level import _make_bids_files_filter

    return _make_bids_files_filter(task_label=task_label, space_label=space_label,
                                   supported_filters=supported_filters, extra_filter=extra_filter,
                                   verbose=verbose)


def check_first_level_from_bids_args(dataset_path, task_label, space_label, sub_labels: list,
                                     exclude_subjects: list, img_filters: list, derivatives_folder) -> None:
    """nilearn's argument checks of ``first_level_from_bids`` (types, labels, folders that exist)."""
    from nilearn.glm.first_level.first_level import _check_args_first_level_from_bids

    _check_args_first_level_from_bids(
        dataset_path=dataset_path, task_label=task_label, space_label=space_label, sub_labels=sub_labels,
        exclude_subjects=exclude_subjects, img_filters=img_filters, derivatives_folder=derivatives_folder)


def split_confounds_kwargs(kwargs: dict) -> tuple[dict | None, dict]:
    """``first_level_from_bids``' ``confounds_*`` arguments as ``load_confounds`` arguments, and the rest.

    Returns
    -------
    load_confounds_kwargs : dict or None
        None: ``confounds_strategy=None`` (no confounds); ``{}``: no
        ``confounds_strategy`` (the confounds tables as they are); else
        every ``load_confounds`` argument (nilearn's defaults filled in).
    remaining : dict
        The keyword arguments that are not ``confounds_*`` ones.
    """
    from nilearn.glm.first_level.first_level import _check_kwargs_load_confounds

    return _check_kwargs_load_confounds(**kwargs)


def list_valid_subjects(derivatives_path, sub_labels: list[str] | None) -> list[str]:
    """The sorted subject labels of ``sub_labels`` (default: all) that have a derivatives folder.

    A label without one is skipped with nilearn's warning.
    """
    from nilearn.glm.first_level.first_level import _list_valid_subjects

    return _list_valid_subjects(derivatives_path, sub_labels)


def report_found_files(files: list, text: str, sub_label: str, filters: list, verbose: int) -> None:
    """nilearn's ``verbose`` listing of the files a query found."""
    from nilearn.glm.first_level.first_level import _report_found_files

    _report_found_files(files=files, text=text, sub_label=sub_label, filters=filters, verbose=verbose)


def check_bids_image_list(imgs: list[str], sub_label: str, filters: list) -> None:
    """nilearn's errors for no run found, or two runs of one session / run."""
    from nilearn.glm.first_level.first_level import _check_bids_image_list

    _check_bids_image_list(imgs, sub_label, filters)


def find_events_files(dataset_path, sub_label: str, task_label: str, img_filters: list, imgs: list[str],
                      verbose: int) -> list[str]:
    """The runs' ``events.tsv`` files (per run, or one at the dataset's root), with nilearn's checks."""
    from nilearn.glm.first_level.first_level import _get_events_files

    return _get_events_files(dataset_path=dataset_path, sub_label=sub_label, task_label=task_label,
                             img_filters=img_filters, imgs=imgs, verbose=verbose)


def check_confounds_files(confounds_files: list[str], imgs: list) -> None:
    """nilearn's error when confounds files are found but not one per run."""
    from nilearn.glm.first_level.first_level import _check_confounds_list

    _check_confounds_list(confounds=confounds_files, imgs=imgs)


def fmriprep_confounds_path(image_file: str) -> str:
    """The confounds table ``load_confounds`` reads for a preprocessed run (nilearn's file search).

    Raises nilearn's ``ValueError`` when none, or more than one, is found next to the run.
    """
    from nilearn.interfaces.fmriprep.load_confounds_utils import get_confounds_file

    return get_confounds_file(image_file, flag_full_aroma=False, flag_tedana=False)


def check_masks_files(masks_files: list[str], imgs: list) -> None:
    """nilearn's warning when brain masks are found but not one per run."""
    from nilearn.glm.first_level.first_level import _check_masks_list

    _check_masks_list(masks_files, imgs)


def check_repetition_time(t_r) -> None:
    """nilearn's type and sign checks of a repetition time."""
    from nilearn.glm.first_level.first_level import _check_repetition_time

    _check_repetition_time(t_r)


def check_slice_time_ref(slice_time_ref) -> None:
    """nilearn's type and range (``[0, 1]``) checks of a slice-timing reference."""
    from nilearn.glm.first_level.first_level import _check_slice_time_ref

    _check_slice_time_ref(slice_time_ref)


def infer_repetition_time(bids_path, filters: list, verbose: int = 0) -> float | None:
    """The ``RepetitionTime`` of the first sidecar matching ``filters`` (nilearn's warnings), or None."""
    from nilearn.interfaces.bids.query import infer_repetition_time_from_dataset

    return infer_repetition_time_from_dataset(bids_path=bids_path, filters=filters, verbose=verbose)


def infer_slice_timing_start_time(bids_path, filters: list, verbose: int = 0) -> float | None:
    """The ``StartTime`` of the first sidecar matching ``filters`` (nilearn's warnings), or None."""
    from nilearn.interfaces.bids.query import infer_slice_timing_start_time_from_dataset

    return infer_slice_timing_start_time_from_dataset(bids_path=bids_path, filters=filters, verbose=verbose)


# --------------------------------------------------------------------- nilearn's GLM interface (its report, its BIDS writer)
def glm_attributes_to_dict(model) -> dict:
    """The model parameters nilearn's report and ``save_glm_to_bids`` (``statmap.json``) list.

    nilearn's ``BaseGLM._attributes_to_dict`` run on ``model`` (it reads the
    parameters by name, ``model.__str__()`` and ``model._is_volume_glm()``).
    """
    from nilearn.glm._base import BaseGLM

    return BaseGLM._attributes_to_dict(model)


def glm_filenames_output(model, prefix, contrasts, contrast_types, out_dir, entities_to_drop=None) -> None:
    """nilearn's BIDS output names of a fitted model, kept in ``model._reporting_data["filenames"]``.

    nilearn's ``BaseGLM._generate_filenames_output`` run on ``model`` (it reads
    ``_reporting_data["run_imgs"]``, ``design_matrices_`` / ``design_matrix_``
    and ``_is_volume_glm()``), as ``nilearn.glm.save_glm_to_bids`` calls it.
    """
    from nilearn.glm._base import BaseGLM

    BaseGLM._generate_filenames_output(model, prefix, contrasts, contrast_types, out_dir, entities_to_drop)


def mni152_plotting_template():
    """The image nilearn's plots and reports draw on for ``bg_img="MNI152TEMPLATE"`` (loaded lazily by nilearn)."""
    from nilearn.plotting.image.utils import MNI152TEMPLATE

    return MNI152TEMPLATE
