"""Surface inputs and outputs of the command line: GIfTI runs, meshes, surface masks and maps.

- ``daskglm fit``: CIFTI-2 ``.dtseries.nii`` runs are positional runs, as
  NIfTI runs; GIfTI runs are given per hemisphere, one file per run, with
  ``--left-run`` / ``--right-run`` (nilearn's ``left`` / ``right`` mesh
  parts, paired in order) and their mesh with ``--mesh``: ``fsaverage5``
  (nilearn ships it; ``--mesh-type`` picks pial, white_matter, inflated,
  sphere or flat) or the ``.surf.gii`` files of the parts (``LEFT RIGHT``,
  or one file for a one-hemisphere fit).  GIfTI masks (non-zero = in) are
  ``--left-mask`` / ``--right-mask``; ``--mask`` takes a ``.dscalar.nii``
  for CIFTI runs.
- ``daskglm contrast``: ``.dscalar.nii`` maps for CIFTI fits, one
  ``<contrast>_<type>_hemi-L.func.gii`` / ``_hemi-R`` file per part for
  GIfTI fits.
- ``daskglm report --mesh LEFT RIGHT``: the fsLR surfaces a CIFTI fit's
  cortical maps are drawn on (:mod:`daskglm.reporting.surface_report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from daskglm.errors import SurfaceInputError, UsageError
from daskglm.io.gifti import HEMI_LABELS, write_surface_parts

__all__ = ["MESH_TYPES", "GIFTI_SUFFIXES", "fit_runs", "load_mesh", "surface_mask", "write_surface_maps",
           "element_word"]

#: mesh types of nilearn's ``load_fsaverage`` (``--mesh-type``)
MESH_TYPES = ("pial", "white_matter", "inflated", "sphere", "flat")
#: suffixes of GIfTI files
GIFTI_SUFFIXES = (".gii", ".gii.gz")
_PARTS = ("left", "right")


def _check_exists(paths, what: str) -> None:
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"The {what} {p!r} does not exist.")


def load_mesh(spec: list[str], mesh_type: str = "pial", parts: tuple[str, ...] = _PARTS):
    """The mesh of ``--mesh``: a standard name or ``.surf.gii`` files, as a nilearn ``PolyMesh``.

    Parameters
    ----------
    spec : list of str
        ``["fsaverage5"]``, ``[LEFT, RIGHT]`` files, or one file for the one part in ``parts``.
    mesh_type : str
        With a standard name: which of nilearn's meshes (``--mesh-type``).
    parts : tuple of str
        The mesh parts the runs cover (``left`` and/or ``right``).

    Raises
    ------
    UsageError
        An unknown name, or a number of files that does not match ``parts``.
    FileNotFoundError
        A mesh file that does not exist.
    """
    from nilearn.surface import PolyMesh

    from daskglm.store.geometry import STANDARD_MESHES, standard_mesh

    names = sorted({t for t, _ in STANDARD_MESHES})
    if len(spec) == 1 and not Path(spec[0]).suffix and not Path(spec[0]).exists():
        if spec[0] not in names:
            raise UsageError(f"--mesh {spec[0]!r} is neither a mesh file nor a standard mesh ({', '.join(names)}).")
        mesh = standard_mesh(spec[0], mesh_type)
        return mesh if tuple(parts) == _PARTS else PolyMesh(**{p: mesh.parts[p] for p in parts})
    _check_exists(spec, "--mesh file")
    if len(spec) != len(parts):
        want = "LEFT.surf.gii RIGHT.surf.gii" if len(parts) == 2 else f"one .surf.gii (the {parts[0]} part)"
        raise UsageError(f"--mesh got {len(spec)} file(s) for the mesh part(s) {', '.join(parts)} of the runs; "
                         f"give {want}, or a standard mesh name ({', '.join(names)}).")
    try:
        return PolyMesh(**dict(zip(parts, spec)))
    except Exception as err:  # nibabel / nilearn: not a GIfTI surface
        raise SurfaceInputError(f"--mesh {' '.join(spec)}: not a GIfTI surface pair ({err}).") from err


def _is_gifti(path: str) -> bool:
    return str(path).endswith(GIFTI_SUFFIXES)


def fit_runs(args) -> list[Any]:
    """The runs of ``daskglm fit``: paths (NIfTI, CIFTI) or GIfTI sources (``--left-run``/``--right-run``).

    Raises
    ------
    UsageError
        GIfTI runs given positionally, without ``--mesh``, one hemisphere only
        for a two-part mesh, unpaired hemispheres, or no run at all.
    """
    from daskglm.io.gifti import GiftiRunSource

    left, right = list(args.left_run or []), list(args.right_run or [])
    positional = list(args.runs or [])
    gifti = [r for r in positional if _is_gifti(r)]
    if gifti:
        raise UsageError(f"{gifti[0]!r} is a GIfTI file: give GIfTI runs per hemisphere with --left-run / "
                         "--right-run (one file per run) and their mesh with --mesh (e.g. --mesh fsaverage5).")
    if not (left or right):
        if args.mesh:
            raise UsageError("--mesh goes with GIfTI runs (--left-run / --right-run); CIFTI and NIfTI runs "
                             "carry their own geometry.")
        if not positional:
            raise UsageError("Give the runs: 4D NIfTI or CIFTI .dtseries.nii files, or GIfTI runs with "
                             "--left-run / --right-run and --mesh.")
        _check_exists(positional, "run")
        return positional
    if positional:
        raise UsageError("Give either positional runs (NIfTI, CIFTI) or GIfTI runs (--left-run / --right-run), "
                         "not both.")
    if not args.mesh:
        raise UsageError("GIfTI runs need their mesh: --mesh fsaverage5 (nilearn's) or "
                         "--mesh LEFT.surf.gii RIGHT.surf.gii.")
    parts = tuple(p for p, files in (("left", left), ("right", right)) if files)
    standard = len(args.mesh) == 1 and not Path(args.mesh[0]).suffix
    if len(parts) == 1 and (standard or len(args.mesh) == 2):
        other = "right" if parts == ("left",) else "left"
        raise UsageError(f"The mesh has a left and a right part, but only --{parts[0]}-run was given; give "
                         f"--{other}-run too (one file per run), or a one-part mesh (--mesh {parts[0].upper()}"
                         ".surf.gii).")
    if left and right and len(left) != len(right):
        raise UsageError(f"{len(left)} --left-run file(s) and {len(right)} --right-run file(s): give one file "
                         "per hemisphere for every run, in the same order.")
    files = {"left": left, "right": right}
    _check_exists([f for p in parts for f in files[p]], "GIfTI run")
    mesh = load_mesh(list(args.mesh), args.mesh_type, parts)
    return [GiftiRunSource({p: files[p][i] for p in parts}, mesh, name=files[parts[0]][i])
            for i in range(len(files[parts[0]]))]


def surface_mask(args, runs: list) -> Any:
    """The ``mask_img`` of ``daskglm fit``: ``--mask`` (volume, CIFTI), or ``--left-mask`` / ``--right-mask``.

    Returns
    -------
    None, False (``--mask none``), a path, or a ``SurfaceImage`` of the GIfTI masks.

    Raises
    ------
    UsageError
        Hemisphere masks for volume or CIFTI runs, a ``--mask`` file for GIfTI
        runs, or masks for other parts than the mesh's.
    """
    from daskglm.io.gifti import GiftiRunSource

    given = {p: m for p, m in (("left", args.left_mask), ("right", args.right_mask)) if m}
    if not isinstance(runs[0], GiftiRunSource):
        if given:
            raise UsageError("--left-mask / --right-mask go with GIfTI runs; give --mask for NIfTI and CIFTI runs.")
        return False if args.mask == "none" else args.mask
    if args.mask not in (None, "none"):
        raise UsageError("GIfTI runs take one mask per hemisphere: --left-mask L.gii --right-mask R.gii "
                         "(or --mask none).")
    if not given:
        return False if args.mask == "none" else None
    geometry = runs[0].geometry
    if sorted(given) != sorted(geometry.part_names):
        raise UsageError(f"Masks given for {', '.join(given)}, the mesh has the part(s) "
                         f"{', '.join(geometry.part_names)}; give --left-mask / --right-mask for each.")
    _check_exists(given.values(), "mask")
    from nilearn.surface import SurfaceImage, load_surf_data

    data = {}
    for part, size in zip(geometry.part_names, geometry.sizes):
        values = np.asarray(load_surf_data(given[part]))
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.shape != (size,):
            raise SurfaceInputError(f"The mask {given[part]!r} holds {values.shape[0]} values, the mesh's {part} "
                                    f"part {size} vertices.")
        data[part] = values
    return SurfaceImage(mesh=geometry.mesh, data=data)


def element_word(model) -> str:
    """What the fit's elements are: voxels, vertices or grayordinates."""
    return model.space_.element_name


def write_surface_maps(model, array: np.ndarray, out_dir: Path, stem: str, description: str) -> list[Path]:
    """One map of a CIFTI or surface fit: ``<stem>.dscalar.nii``, or ``<stem>_hemi-L.func.gii`` per part.

    Returns
    -------
    list of Path
        The files written.
    """
    img = model.space_.unmask(array, description)
    if model.space_.kind == "cifti":
        path = out_dir / f"{stem}.dscalar.nii"
        img.to_filename(path)
        return [path]
    paths = {part: out_dir / f"{stem}_hemi-{HEMI_LABELS[part]}.func.gii" for part in img.mesh.parts}
    return write_surface_parts(img, paths)
