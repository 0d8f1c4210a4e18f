"""Where a BIDS dataset's files are: a local directory, or a local *view* of a remote one.

nilearn's BIDS queries (``first_level_from_bids``, ``load_confounds``,
``infer_repetition_time_from_dataset``) glob a local directory.  For a dataset
on object storage (``s3://bucket/ds``), :func:`dataset_view` lists the
dataset once and builds a local view of it in a temporary directory: the
small files the queries read (JSON sidecars, events and confounds tables,
brain masks) are copied - concurrently, in one ``fs.cat`` call - and every
other image (the BOLD runs above all) is an empty placeholder with the same
name, so the runs never leave object storage except to the workers that
stream them.  :class:`DatasetView.url_of` maps a path of the view back to the
object's URL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from daskglm.io.remote import is_url

__all__ = ["subject_folders", "derivatives_candidates", "no_subject_hint", "DatasetView", "dataset_view", "SMALL_SUFFIXES"]

#: Files copied into the view (everything else is a placeholder).
SMALL_SUFFIXES = (".json", ".tsv", ".csv", ".txt", "_mask.nii.gz", "_mask.nii", "_dseg.nii.gz")


@dataclass
class DatasetView:
    """A dataset as nilearn's queries see it.

    Attributes
    ----------
    root : pathlib.Path
        Local directory to hand to nilearn (the dataset itself when local).
    url : str or None
        The dataset's URL when remote, else None.
    storage_options : dict
    """

    root: Path
    url: str | None = None
    storage_options: dict = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        """Whether the dataset lives on object storage."""
        return self.url is not None

    def url_of(self, path) -> str:
        """The URL (remote) or absolute path (local) of a file of the view."""
        path = Path(path).absolute()
        if not self.remote:
            return str(path)
        rel = path.relative_to(self.root.absolute()).as_posix()
        return f"{self.url}/{rel}"


def _keep(rel: str, task_label: str | None) -> bool:
    name = rel.rsplit("/", 1)[-1]
    if "/" not in rel or name == "dataset_description.json":
        return True
    return task_label is None or f"task-{task_label}" in name or not name.startswith("sub-")


@contextlib.contextmanager
def dataset_view(dataset, task_label: str | None = None,
                 storage_options: dict | None = None) -> Iterator[DatasetView]:
    """Yield a :class:`DatasetView` of ``dataset`` (a directory or an fsspec URL).

    Parameters
    ----------
    dataset : str or path
        Local BIDS directory (relative paths are resolved here) or URL.
    task_label : str, optional
        Only files of this task (and top-level files) enter a remote view.
    storage_options : dict, optional
        fsspec options for a URL.
    """
    if not is_url(dataset):
        text = str(dataset)
        root = Path(text[7:] if text.startswith("file://") else text).absolute()
        if not root.is_dir():
            raise FileNotFoundError(f"The BIDS dataset {str(root)!r} is not a directory.")
        yield DatasetView(root)
        return
    import fsspec

    url = str(dataset).rstrip("/")
    fs, base = fsspec.core.url_to_fs(url, **(storage_options or {}))
    fs.invalidate_cache()
    files = [p for p in fs.find(base) if not p.endswith("/")]
    if not files:
        raise FileNotFoundError(f"The BIDS dataset {url!r} is empty or does not exist.")
    tmp = Path(tempfile.mkdtemp(prefix="daskglm-bids-"))
    try:
        copy = {}
        for path in files:
            rel = path[len(base):].lstrip("/")
            if not _keep(rel, task_label):
                continue
            local = tmp / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            if rel.endswith(SMALL_SUFFIXES):
                copy[path] = local
            else:
                local.touch()
        if copy:
            contents = fs.cat(list(copy))
            for path, local in copy.items():
                local.write_bytes(contents[path])
        yield DatasetView(tmp, url, dict(storage_options or {}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def subject_folders(folder: Path) -> list[str]:
    """The ``sub-*`` folders directly in ``folder`` (none if it is not a directory)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith("sub-"))


def derivatives_candidates(root: Path, derivatives_folder: str) -> list[str]:
    """The pipelines' folders in ``<root>/<derivatives_folder>`` that hold subjects (e.g. ``derivatives/fmriprep``).

    fMRIPrep's output usually sits one level down (``derivatives/fmriprep``);
    nilearn's default ``derivatives_folder="derivatives"`` then finds no
    subject.  Returns the candidates relative to ``root``, sorted.
    """
    base = Path(root) / derivatives_folder
    if not base.is_dir():
        return []
    return sorted(f"{derivatives_folder.rstrip('/')}/{p.name}" for p in base.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and subject_folders(p))


def no_subject_hint(root: Path, derivatives_folder: str) -> str:
    """What to say after "No subject found in <derivatives>": the folders that do hold subjects."""
    candidates = derivatives_candidates(root, derivatives_folder)
    if not candidates:
        return ""
    listed = " or ".join(f"derivatives_folder={c!r}" for c in candidates)
    return f"; did you mean {listed}?"


def is_placeholder(path) -> bool:
    """Whether a file of a view is an empty placeholder (a remote image)."""
    return os.path.getsize(path) == 0
