"""BIDS derivatives out: :func:`save_bids_derivatives`, named as nilearn's ``save_glm_to_bids``.

For a subject fitted on BIDS-named runs, the files are those nilearn's
:func:`nilearn.interfaces.bids.save_glm_to_bids` writes for the same model
(its naming rules, via nilearn's own ``create_bids_filename`` and contrast-name
cleaning; figures and cluster tables are not written)::

    <out>/dataset_description.json                      GeneratedBy daskglm <version>, SourceDatasets
    <out>/sub-01/sub-01_task-T_space-S_mask.nii.gz
    <out>/sub-01/sub-01_task-T_space-S_contrast-faceMinusHouse_stat-<effect|t|F|variance|z|p>_statmap.nii.gz
    <out>/sub-01/sub-01_ses-1_task-T_run-1_space-S_design.tsv   (+ .json: RepetitionTime)
    <out>/sub-01/statmap.json                           model parameters and the inputs' identities

Entities (``ses``, ``space``) enter the map names only when they are the
same for all the subject's runs, as in nilearn.

Surface fits are written as nilearn writes them: CIFTI-2 fits as dense scalar
files with the same names (``..._statmap.dscalar.nii``, ``..._mask.dscalar.nii``;
the runs' ``den`` entity, e.g. fMRIPrep's ``den-91k``, is kept after ``space``,
as in the inputs' names) over the input's brain models;
``SurfaceImage`` fits as one GIfTI file per hemisphere, named by nilearn's
rule (``..._hemi-L_den-10242_contrast-..._statmap.gii``; the mask as uint8).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from daskglm._version import __version__
from daskglm.compat.nilearn import (
    bids_entities,
    clean_contrast_name,
    contrasts_as_dict,
    create_bids_filename,
    surface_map_filename,
)
from daskglm.io.gifti import HEMI_LABELS, write_surface_parts

__all__ = ["save_bids_derivatives", "derivative_filenames", "surface_filenames", "mask_used", "COMPUTED_MASKS"]

_STATS = (("effect_size", "effect"), ("stat", None), ("effect_variance", "variance"),
          ("z_score", "z"), ("p_value", "p"))


def _entities_to_include() -> list[str]:
    entities = [*bids_entities()["raw"], *bids_entities()["derivatives"]]
    return [e for e in entities if e not in ("part", "echo", "hemi", "desc")] + ["contrast", "stat"]


def _stat_type(definition) -> str:
    if isinstance(definition, str):
        return "t"
    return "t" if np.asarray(definition).ndim == 1 else "F"


def derivative_filenames(run_names: list[str], contrasts: dict, extension: str = "nii.gz") -> dict:
    """The file names nilearn's ``save_glm_to_bids`` gives a first-level fit of these runs.

    Parameters
    ----------
    run_names : list of str
        The runs' paths or URLs (BIDS names).
    contrasts : dict
        ``{name: definition}``.
    extension : str
        Of the mask and maps: ``"nii.gz"`` (volumes), ``"dscalar.nii"`` (CIFTI-2),
        ``"gii"`` (surfaces; before the per-hemisphere names of :func:`surface_filenames`).

    Returns
    -------
    dict
        ``sub`` (folder), ``mask``, ``maps`` (``{name: {output_type: file}}``),
        ``designs`` (one ``.tsv`` per run).
    """
    from nilearn.interfaces.bids import parse_bids_filename

    include = _entities_to_include()
    run_entities = [parse_bids_filename(str(n).rsplit("/", 1)[-1])["entities"] for n in run_names]
    entities = {}
    keys = ("sub", "ses", "task", "space", "den") if extension == "dscalar.nii" else ("sub", "ses", "task", "space")
    for key in keys:
        labels = {e.get(key) for e in run_entities if e.get(key) is not None}
        entities[key] = labels.pop() if len(labels) == 1 else None
    mask_entities = {k: v for k, v in entities.items() if k not in ("run", "ses")}
    mask = create_bids_filename({"prefix": None, "suffix": "mask", "extension": extension,
                                 "entities": mask_entities}, include)
    maps = {}
    for name, definition in contrasts.items():
        fields = {"prefix": None, "suffix": "statmap", "extension": extension,
                  "entities": {**entities, "contrast": clean_contrast_name(name)}}
        maps[name] = {}
        for output, label in _STATS:
            fields["entities"]["stat"] = label or _stat_type(definition)
            maps[name][output] = create_bids_filename(fields, include)
    multi = len(run_names) > 1
    designs = []
    for i, ent in enumerate(run_entities):
        ent = dict(ent) if ent.get("sub") else ({"run": i + 1} if multi else {})
        designs.append(create_bids_filename({"prefix": None, "suffix": "design", "extension": "tsv",
                                             "entities": ent}, include))
    sub = f"sub-{entities['sub']}" if entities["sub"] else ""
    return {"sub": sub, "mask": mask, "maps": maps, "designs": designs}


def surface_filenames(filename: str, img) -> dict:
    """nilearn's per-hemisphere GIfTI names of a ``SurfaceImage`` map: ``{part: file}``.

    ``hemi-L`` / ``hemi-R`` and ``den-<vertices>`` are added in BIDS order
    (nilearn's, :func:`daskglm.compat.nilearn.surface_map_filename`).
    """
    return {part: surface_map_filename(filename, HEMI_LABELS[part], img.mesh.parts[part].n_vertices)
            for part in img.mesh.parts}


def _write_map(img, folder: Path, filename: str, surface: bool, dtype=None) -> list[str]:
    """Write one map (per hemisphere for a ``SurfaceImage``); the file names written."""
    if not surface:
        img.to_filename(folder / filename)
        return [filename]
    names = surface_filenames(filename, img)
    write_surface_parts(img, {part: folder / name for part, name in names.items()}, dtype)
    return list(names.values())


_EXTENSIONS = {"volume": "nii.gz", "cifti": "dscalar.nii", "surface": "gii"}


def _dataset_description(out: Path, sources: list[str]) -> None:
    path = out / "dataset_description.json"
    generated = {"Name": "daskglm", "Version": __version__,
                 "Description": "A daskglm first-level GLM (nilearn's FirstLevelModel on dask)."}
    if path.exists():
        desc = json.loads(path.read_text())
        if generated not in desc.setdefault("GeneratedBy", []):
            desc["GeneratedBy"].append(generated)
    else:
        desc = {"BIDSVersion": "1.9.0", "DatasetType": "derivative", "GeneratedBy": [generated]}
    known = desc.setdefault("SourceDatasets", [])
    for src in sources:
        if {"URL": src} not in known:
            known.append({"URL": src})
    path.write_text(json.dumps(desc, indent=4, sort_keys=True))


#: What ``statmap.json`` records as ``mask_img`` when the fit computed its mask (``mask_img=None``), per kind.
COMPUTED_MASKS = {"volume": "epi mask computed", "surface": "vertices finite in every scan",
                  "cifti": "every grayordinate"}


def mask_used(model) -> str | list[str]:
    """The mask a fit used, as ``statmap.json`` records it: a path, or how it was computed.

    ``mask_img`` a path: that path; None: :data:`COMPUTED_MASKS` (nilearn's
    EPI mask of the runs for volumes); False: every element; an image in
    memory: ``"image given in memory"`` (:func:`daskglm.fit_bids` records the
    brain-mask files it intersected instead).
    """
    mask = model.mask_img
    if isinstance(mask, (str, os.PathLike)):
        return str(mask)
    if mask is None:
        return COMPUTED_MASKS[model.space_.kind]
    if mask is False:
        return "none: every element"
    return "image given in memory"


def save_bids_derivatives(model, out_dir, contrasts: dict, run_names: list[str] | None = None,
                          source_dataset: str | None = None, mask: str | list[str] | None = None) -> dict:
    """Write a fitted model's contrast maps, designs and mask as BIDS derivatives.

    Parameters
    ----------
    model : daskglm.FirstLevelModel
        A fitted (or reopened, :func:`daskglm.open_subject`) model.
    out_dir : str or path
        Derivatives root; the subject's files go to ``<out_dir>/sub-<label>/``.
    contrasts : dict
        ``{name: definition}``; a list or a single definition is named by itself, as nilearn.
    run_names : list of str, optional
        The runs' BIDS paths or URLs (they give the names); default: the
        inputs recorded in the fit.
    source_dataset : str, optional
        The input dataset's path or URL, recorded in ``dataset_description.json``.
    mask : str or list of str, optional
        The mask the fit used, recorded as ``mask_img`` in ``statmap.json``'s
        ``ModelParameters`` (the brain masks intersected, for
        ``mask_img="derivatives"``); default :func:`mask_used`.

    Returns
    -------
    dict
        The file names (:func:`derivative_filenames`), the folder (``dir``)
        and every file written (``files``; per hemisphere for surface fits).

    Notes
    -----
    CIFTI-2 fits write dense scalar maps and mask (``.dscalar.nii``) under
    the same names; ``SurfaceImage`` fits write one GIfTI file per hemisphere
    (``hemi-L`` / ``hemi-R``, ``den-<vertices>``), as nilearn's ``save_glm_to_bids``.
    """
    contrasts = contrasts_as_dict(contrasts)
    if run_names is None:  # the inputs of a fit (a reopened store has none: names by position)
        run_names = model.run_names_
    kind = model.space_.kind
    surface = kind == "surface"
    names = derivative_filenames(run_names, contrasts, _EXTENSIONS[kind])
    out = Path(out_dir).absolute()
    folder = out / names["sub"]
    folder.mkdir(parents=True, exist_ok=True)
    _dataset_description(out, [source_dataset] if source_dataset else [])
    files = _write_map(model.mask_img_, folder, names["mask"], surface, dtype=np.uint8)
    for name, definition in contrasts.items():
        maps = model.compute_contrast(definition, output_type="all")
        for output, filename in names["maps"][name].items():
            files += _write_map(maps[output], folder, filename, surface)
    files += names["designs"]
    for design, filename in zip(model.design_matrices_, names["designs"]):
        design.to_csv(folder / filename, sep="\t", index=False)
        (folder / filename).with_suffix(".json").write_text(
            json.dumps({"RepetitionTime": model.t_r}, indent=4, sort_keys=True))
    params = {**model.get_params(), "mask_img": mask if mask is not None else mask_used(model)}
    meta = {"Description": f"A statistical map generated by daskglm {__version__}.",
            "ModelParameters": params, "Inputs": list(map(str, run_names))}
    (folder / "statmap.json").write_text(json.dumps(meta, indent=4, sort_keys=True, default=str))
    return {"dir": str(folder), **names, "files": files}
