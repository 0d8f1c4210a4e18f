"""A study's runs as NIfTI-Zarr copies, converted once and reused by every refit (``daskglm bids --convert-to-zarr``).

Each subject's ``.nii`` / ``.nii.gz`` runs are converted (in parallel, one pass
each, :func:`daskglm.io.nifti_zarr_write.convert_runs`) to::

    <zarr_dir>/sub-<id>/<run file name>.nii.zarr

and the subject is fitted from the copies.  A copy is reused when the input it
was converted from is unchanged (path, size and modification time, or URL,
size and version, as recorded in the store's ``daskglm`` attributes); otherwise
it is rewritten (atomically).  Surface and CIFTI runs are fitted as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from daskglm.io.nifti_zarr import is_zarr_run
from daskglm.io.nifti_zarr_write import convert_runs, zarr_run_name
from daskglm.io.remote import RemoteRunSource, is_url
from daskglm.io.runs import as_run_source

__all__ = ["default_zarr_dir", "zarr_copies", "subject_zarr_runs"]


def default_zarr_dir(store) -> str:
    """``<store's parent>/derivatives/daskglm-zarr``: next to the output store, never inside the input dataset."""
    if is_url(str(store)):
        raise ValueError("With a store at a URL, give --convert-to-zarr a local directory for the Zarr copies.")
    return str(Path(store).absolute().parent / "derivatives" / "daskglm-zarr")


def _convertible(run) -> bool:
    if isinstance(run, RemoteRunSource):
        return True
    if not isinstance(run, (str, os.PathLike)) or is_zarr_run(run):
        return False
    name = str(run).lower()
    return name.endswith((".nii", ".nii.gz")) and not name.endswith((".dtseries.nii", ".dscalar.nii"))


def _up_to_date(store: Path, run) -> bool:
    """Whether ``store`` holds a complete conversion of ``run`` as it is now."""
    if not store.exists():
        return False
    try:
        import zarr

        recorded = dict(zarr.open_group(store, mode="r").attrs).get("daskglm", {}).get("converted_from")
        return recorded == as_run_source(run).identity()
    except Exception:  # an unreadable or foreign store: rewritten
        return False


def subject_zarr_runs(runs: list, folder: str | os.PathLike, **options) -> list:
    """A subject's runs with their ``.nii`` / ``.nii.gz`` replaced by NIfTI-Zarr copies in ``folder``.

    Missing or outdated copies are written (in parallel); ``options`` go to :func:`convert_runs`.
    """
    folder = Path(folder)
    single = not isinstance(runs, (list, tuple))
    runs = [runs] if single else list(runs)
    out, stale = list(runs), []
    for i, run in enumerate(runs):
        if _convertible(run):
            store = folder / zarr_run_name(getattr(run, "name", run) if isinstance(run, RemoteRunSource) else run)
            out[i] = str(store)
            if not _up_to_date(store, run):
                stale.append(run)
    if stale:
        convert_runs(stale, folder, overwrite=True, **options)
    return out[0] if single else out


def zarr_copies(queried: Iterable, zarr_dir: str | os.PathLike) -> Iterator:
    """``(id, (model, imgs, events, confounds))`` of a study query, with the runs as Zarr copies.

    A subject whose conversion fails carries the error, as a failed query does.
    """
    for sid, found in queried:
        if isinstance(found, BaseException):
            yield sid, found
            continue
        model, imgs, events, confounds = found
        try:
            copies = subject_zarr_runs(imgs, Path(zarr_dir) / f"sub-{sid}")
        except Exception as err:
            yield sid, err
            continue
        yield sid, (model, copies, events, confounds)
