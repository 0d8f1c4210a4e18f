"""One subject's files in a BIDS + fMRIPrep dataset: runs, brain masks, confounds.

nilearn 0.14.1's ``first_level_from_bids`` finds volume runs
(``*_bold.nii[.gz]``) and fsaverage5 GIfTI pairs (``*_hemi-L/R_*_bold.func.gii``);
these queries find the same files with the same filters, checks and
``verbose`` listings, and also:

- fMRIPrep's CIFTI-2 runs (``space_label="fsLR"``, :func:`daskglm.io.cifti.is_cifti_space`:
  ``*_space-fsLR_den-91k_bold.dtseries.nii``), which need no brain mask (their
  brain models are the mask);
- GIfTI runs of a dataset on object storage as their ``hemi-L`` paths (the
  local view's files are empty placeholders that nilearn would load);
- each run's ``load_confounds`` confounds *and* sample mask, run by run (the
  mask rides on the DataFrame, :func:`daskglm.glm.sample_masks.with_sample_mask`;
  nilearn drops it, and loads a two-run subject's ``hemi-L`` files as one
  left/right pair).

The file listing is :func:`nilearn.interfaces.bids.get_bids_files` (public);
nilearn's checks and messages come through :mod:`daskglm.compat.nilearn`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from daskglm.compat.nilearn import (
    bids_entities,
    bids_files_filter,
    check_bids_image_list,
    check_confounds_files,
    check_masks_files,
    report_found_files,
)
from daskglm.errors import SurfaceInputError
from daskglm.glm.sample_masks import with_sample_mask
from daskglm.io.cifti import is_cifti_space

__all__ = ["is_gifti_space", "RunFiles", "image_filters", "run_files", "mask_files", "confounds_files",
           "load_run_confounds"]


def is_gifti_space(space_label) -> bool:
    """nilearn 0.14.1's test for its GIfTI runs: a non-empty substring of ``"fsaverage5"`` (or None)."""
    return space_label is None or (isinstance(space_label, str) and space_label != ""
                                   and space_label in "fsaverage5")


@dataclass(frozen=True)
class RunFiles:
    """A subject's runs as found.

    Attributes
    ----------
    files : list of str
        One file per run: the image (volume, CIFTI) or the ``hemi-L`` file
        (GIfTI); events, confounds and masks are matched to these.
    right : list of str or None
        The ``hemi-R`` file of each GIfTI run (None for other runs).
    kind : {"volume", "cifti", "gifti"}
    """

    files: list[str]
    right: list[str] | None
    kind: str


def _supported() -> list[str]:
    entities = bids_entities()
    return [*entities["raw"], *entities["derivatives"]]


def image_filters(task_label: str, space_label: str | None, img_filters: list, verbose: int = 0) -> list:
    """nilearn's filters of a subject's preprocessed runs (task, space, the valid ``img_filters``)."""
    return bids_files_filter(task_label=task_label, space_label=space_label, supported_filters=_supported(),
                             extra_filter=img_filters, verbose=verbose)


def run_files(derivatives_path: Path, sub_label: str, task_label: str, space_label: str | None,
              img_filters: list, verbose: int = 0) -> RunFiles:
    """A subject's preprocessed runs, checked as nilearn checks them (one per session / run).

    Raises
    ------
    ValueError
        nilearn's "No BOLD files found" and "Too many images found" errors.
    SurfaceInputError
        GIfTI runs whose ``hemi-L`` and ``hemi-R`` files do not pair up.
    """
    from nilearn.interfaces.bids import get_bids_files

    filters = image_filters(task_label, space_label, img_filters, verbose)
    query = dict(main_path=derivatives_path, modality_folder="func", file_tag="bold", sub_label=sub_label)
    right = None
    if is_cifti_space(space_label):
        kind, text = "cifti", "preprocessed BOLD (CIFTI)"
        files = get_bids_files(file_type="dtseries.nii", filters=filters, **query)
        reported = files
    elif is_gifti_space(space_label):
        kind, text = "gifti", "preprocessed BOLD"
        files = get_bids_files(file_type="func.gii", filters=[*filters, ("hemi", "L")], **query)
        right = get_bids_files(file_type="func.gii", filters=[*filters, ("hemi", "R")], **query)
        paired = [Path(f).name.replace("hemi-L", "hemi-R") for f in files]
        if paired != [Path(f).name for f in right]:
            raise SurfaceInputError(
                f"sub-{sub_label}: the hemi-L and hemi-R runs do not pair up ({len(files)} hemi-L, "
                f"{len(right)} hemi-R files for filter {filters}).")
        reported = files + right
    else:
        kind, text = "volume", "preprocessed BOLD"
        files = get_bids_files(file_type="nii*", filters=filters, **query)
        reported = files
    report_found_files(files=reported, text=text, sub_label=sub_label, filters=filters, verbose=verbose)
    check_bids_image_list(files, sub_label, filters)
    return RunFiles(files, right, kind)


def mask_files(derivatives_path: Path, sub_label: str, task_label: str, space_label: str | None,
               img_filters: list, runs: RunFiles, verbose: int = 0) -> list[str]:
    """A subject's fMRIPrep brain masks (``mask_img="derivatives"``), as nilearn finds them.

    None for surface runs: fsaverage5 (nilearn looks for none) and CIFTI (the
    brain models are the mask).  Masks found but not one per run: nilearn's warning.
    """
    if space_label in (None, "", "fsaverage5") or runs.kind == "cifti":
        return []
    from nilearn.interfaces.bids import get_bids_files

    filters = bids_files_filter(task_label=task_label, space_label=space_label, supported_filters=_supported(),
                                extra_filter=[f for f in img_filters if f[0] != "desc"], verbose=verbose)
    masks = get_bids_files(main_path=derivatives_path, modality_folder="func", file_tag="mask",
                           file_type="nii*", sub_label=sub_label, filters=filters)
    report_found_files(files=masks, text="masks", sub_label=sub_label, filters=filters, verbose=verbose)
    check_masks_files(masks, runs.files)
    return masks


def confounds_files(derivatives_path: Path, sub_label: str, task_label: str, img_filters: list,
                    runs: RunFiles, verbose: int = 0) -> list[str]:
    """A subject's ``desc-confounds*.tsv`` files; if any, one per run (nilearn's error otherwise)."""
    from nilearn.interfaces.bids import get_bids_files

    filters = bids_files_filter(task_label=task_label, supported_filters=bids_entities()["raw"],
                                extra_filter=[f for f in img_filters if f[0] != "desc"], verbose=verbose)
    files = get_bids_files(derivatives_path, modality_folder="func", file_tag="desc-confounds*",
                           file_type="tsv", sub_label=sub_label, filters=filters)
    report_found_files(files=files, text="confounds", sub_label=sub_label, filters=filters, verbose=verbose)
    check_confounds_files(files, runs.files)
    return files


def load_run_confounds(files: list[str], runs: RunFiles, load_kwargs: dict | None):
    """A subject's confounds, as ``first_level_from_bids`` returns them, with the sample masks on board.

    Parameters
    ----------
    files : list of str
        The subject's confounds files (:func:`confounds_files`).
    runs : RunFiles
    load_kwargs : dict or None
        ``load_confounds`` arguments (:func:`daskglm.compat.nilearn.split_confounds_kwargs`):
        None, no confounds; ``{}``, the tables as they are (first-row n/a set to 0, nilearn's).

    Returns
    -------
    list of pandas.DataFrame, pandas.DataFrame, or None
        One table per run, each carrying its ``load_confounds`` sample mask in
        ``attrs["sample_mask"]`` (absent when no scan is dropped).  None
        without confounds files, with ``load_kwargs=None`` or an empty strategy.
        As nilearn 0.14.1, a one-run volume or CIFTI subject's confounds are
        the table itself, not a list of one (surface subjects: always a list).
    """
    if not files or load_kwargs is None:
        return None
    if not load_kwargs:
        tables = [pd.read_csv(f, sep="\t", index_col=None) for f in files]
        for table in tables:  # nilearn: n/a in the first row (framewise displacement...) -> 0
            table.iloc[0] = table.iloc[0].fillna(0.0)
        return tables
    from nilearn.interfaces.fmriprep import load_confounds

    loaded = [load_confounds(img_files=run, **load_kwargs) for run in runs.files]
    if all(frame is None for frame, _ in loaded):  # an empty strategy
        return None
    tables = [with_sample_mask(frame, mask) for frame, mask in loaded]
    return tables[0] if len(tables) == 1 and runs.kind != "gifti" else tables
