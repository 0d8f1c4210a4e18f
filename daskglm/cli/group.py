"""``daskglm group``: a group analysis straight from a study store.

Reads the subjects of a study store (``fit-subjects`` or any writer of its
layout), computes the first-level contrast of every subject and the group
contrast in one dask graph, writes the parametric maps, optionally the
permutation (FWE, TFCE, cluster) maps, the design and an HTML report.

Maps are written in the fits' own format: NIfTI (``.nii.gz``) for volume
fits, one GIfTI file per hemisphere (``_hemi-L.func.gii``) for surface fits
(``daskglm bids --space fsaverage5``), CIFTI-2 dense scalars
(``.dscalar.nii``, over the fits' brain models) for CIFTI fits
(``--space fsLR``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daskglm.cli.runtime import command, compute_with_progress, local_progress
from daskglm.cli.values import safe_filename
from daskglm.errors import UsageError
from daskglm.glm.contrasts import OUTPUT_SUFFIX

__all__ = ["add_group", "cmd_group", "write_map"]


def add_group(sub, parents: list, formatter_class) -> argparse.ArgumentParser:
    """Add ``group`` to the subparsers ``sub`` (with the common options ``parents``)."""
    p = sub.add_parser(
        "group", parents=parents, formatter_class=formatter_class,
        help="group (second-level) analysis of a study store",
        description=(
            "Second-level GLM over the subjects of a study store: each subject's first-level "
            "contrast is computed from its stored fit, in the same dask graph as the group model "
            "(nilearn's SecondLevelModel numerics).  Writes z/stat/p/effect maps, optional "
            "permutation maps (nilearn's non_parametric_inference), the design and report.html."
        ),
        epilog="examples:\n"
               "  daskglm group study.zarr --first-level-contrast 'audio - visual' -o group\n"
               "  daskglm group study.zarr --first-level-contrast audio --design design.tsv "
               "--contrast age --permutations 5000 --tfce -o group --scheduler tcp://sched:8786",
    )
    p.add_argument("store", help="study store (directory or fsspec URL) with sub-<id> groups")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--first-level-contrast", required=True, metavar="EXPR",
                   help="first-level contrast: expression over the subjects' design columns")
    p.add_argument("--design", metavar="TSV",
                   help="group design (.tsv/.csv, one row per subject in the order of --subjects or of "
                        "the store's sorted subject ids); default: intercept only")
    p.add_argument("--contrast", metavar="EXPR", default=None,
                   help="second-level contrast over the design's columns (default: the only column)")
    p.add_argument("--subjects", nargs="+", metavar="ID", help="subjects to use (default: all complete)")
    p.add_argument("--mask", metavar="IMAGE",
                   help="group mask: NIfTI for volume fits, a CIFTI image for CIFTI fits (default: nilearn's, "
                        "from the first subject; every grayordinate for CIFTI)")
    p.add_argument("--smoothing-fwhm", type=float, metavar="MM", help="smooth the subjects' maps")
    p.add_argument("--mixed-effects", action="store_true",
                   help="weight subjects by their first-level variances (FLAME1-like REML)")
    perm = p.add_argument_group("permutation inference")
    perm.add_argument("--permutations", type=int, default=0, metavar="N",
                      help="number of sign flips / permutations (0: none)")
    perm.add_argument("--tfce", action="store_true", help="TFCE maps (with --permutations)")
    perm.add_argument("--cluster-threshold", type=float, metavar="Z",
                      help="cluster-forming threshold as a z value: clusters are formed where the t map's "
                           "p-value is below sf(Z), i.e. t > Z on the z scale, or |t| > Z with --two-sided "
                           "(p = 2 sf(Z) is passed as threshold=); cluster size and mass FWE maps "
                           "(with --permutations)")
    perm.add_argument("--two-sided", action="store_true", help="two-sided permutation test")
    perm.add_argument("--seed", type=int, default=0, help="random_state of the permutations")
    perm.add_argument("--mesh", nargs=2, metavar=("LEFT", "RIGHT"),
                      help="CIFTI fits: the .surf.gii surfaces their cortex lies on (e.g. the fsLR 32k "
                           "midthickness pair), needed by --tfce and --cluster-threshold; report.html draws "
                           "the cortical maps on them")
    p.set_defaults(func=cmd_group)
    return p


def _design(path: str | None):
    if path is None:
        return None
    import pandas as pd

    if not Path(path).is_file():
        raise FileNotFoundError(f"The design file {path!r} does not exist.")
    return pd.read_csv(path, sep="\t" if path.endswith(".tsv") else ",")


def _check(args) -> None:
    """Checks of the arguments alone (before the store is read)."""
    if args.permutations < 0:
        raise UsageError(f"--permutations must be ≥ 0, got {args.permutations}.")
    if (args.tfce or args.cluster_threshold is not None) and not args.permutations:
        raise UsageError("--tfce and --cluster-threshold need --permutations N.")
    if "://" not in args.store and not Path(args.store).exists():
        raise FileNotFoundError(f"The store {args.store!r} does not exist.")
    for surface in args.mesh or ():
        if "://" not in surface and not Path(surface).is_file():
            raise FileNotFoundError(f"The --mesh surface {surface!r} does not exist.")


def _check_topology(model, args) -> None:
    """TFCE / cluster inference on CIFTI maps: ``--mesh`` given and matching the maps, before any map is read.

    Raises
    ------
    UsageError
        CIFTI maps, ``--tfce`` or ``--cluster-threshold``, and no ``--mesh``.
    SurfaceInputError
        A mesh that does not match the maps' cortex (or a mesh for volume or GIfTI maps).
    """
    from daskglm.group.maskers import masker_space, space_topology

    space = masker_space(model.masker_)
    if args.mesh is not None and space.kind == "cifti":  # report.html draws on it: checked before writing
        from daskglm.reporting.surface_report import cifti_mesh

        cifti_mesh(args.mesh, space.geometry.brain_models)
    if not args.permutations or not (args.tfce or args.cluster_threshold is not None):
        return
    if space.kind == "cifti" and args.mesh is None and space.geometry.brain_models.nvertices:
        raise UsageError("--tfce and --cluster-threshold on CIFTI maps need the surfaces their cortex lies on "
                         "(a CIFTI file holds no mesh): pass --mesh LEFT.surf.gii RIGHT.surf.gii "
                         "(e.g. the fsLR 32k midthickness pair).")
    space_topology(space, args.mesh)


def write_map(img, stem: Path) -> list[Path]:
    """A group map in its kind's format: ``stem.nii.gz``, ``stem.dscalar.nii`` or ``stem_hemi-L/R.func.gii``."""
    import nibabel as nib

    from daskglm.io.gifti import HEMI_LABELS, is_surface_image, write_surface_parts

    if is_surface_image(img):
        parts = {part: stem.parent / f"{stem.name}_hemi-{HEMI_LABELS.get(part, part)}.func.gii"
                 for part in img.mesh.parts}
        return write_surface_parts(img, parts)
    path = stem.parent / (stem.name + (".dscalar.nii" if isinstance(img, nib.Cifti2Image) else ".nii.gz"))
    img.to_filename(path)
    return [path]


def _parametric(model, args, out: Path, name: str) -> None:
    from daskglm.group.maskers import describe

    graph = model.contrast_graph(args.contrast, args.first_level_contrast)
    (values,) = compute_with_progress(graph.packed, client=args.client, show=not args.no_progress)
    for kind, data in graph.maps(values).items():
        img = describe(model.masker_.inverse_transform(data), f"{kind} of contrast {graph.con_val}")
        write_map(img, out / f"{name}_{OUTPUT_SUFFIX[kind]}")


def _cluster_p_threshold(z: float | None, two_sided: bool) -> float | None:
    """``--cluster-threshold Z`` as the p ``threshold`` of :func:`~daskglm.non_parametric_inference`.

    Clusters form where the t map's p-value is below sf(Z) on the tested side(s): a one-sided p of
    sf(Z), or a two-sided p of 2 sf(Z) (nilearn halves a two-sided threshold), so the cluster-forming
    level is ``Z`` on the z scale either way.
    """
    from scipy import stats

    if z is None:
        return None
    p = float(stats.norm.sf(z))
    return 2 * p if two_sided else p


def _permutations(args, design, out: Path, name: str) -> list[str]:
    """Write the permutation maps; returns their keys (``logp_max_t``, ``tfce``...)."""
    from daskglm.group.permutation import non_parametric_inference

    threshold = _cluster_p_threshold(args.cluster_threshold, args.two_sided)
    with local_progress(not args.no_progress and args.client is None):
        result = non_parametric_inference(
            args.store, design_matrix=design, second_level_contrast=args.contrast,
            first_level_contrast=args.first_level_contrast, mask=args.mask, smoothing_fwhm=args.smoothing_fwhm,
            n_perm=args.permutations, two_sided_test=args.two_sided, random_state=args.seed,
            threshold=threshold, tfce=args.tfce, subjects=args.subjects, mesh=args.mesh)
    if not isinstance(result, dict):
        result = {"logp_max_t": result}
    for key, img in result.items():
        write_map(img, out / f"{name}_perm_{key}")
    return list(result)


def _report(model, args, out: Path, name: str, kind: str, permuted=()):
    """The group report (:mod:`daskglm.reporting.group_report`) of the maps just written, none recomputed:
    over the subjects' mean anatomy for volumes, on the mesh for surfaces, on ``--mesh`` (if given) for CIFTI
    maps.  ``permuted``: the keys of the
    permutation maps this run wrote (older ones in the directory are not shown)."""
    from daskglm.reporting.group_report import FWE_MAPS, make_group_report

    contrast = args.contrast or str(model.design_matrix_.columns[0])
    mesh = model.masker_.mask_img_.mesh if kind == "surface" else None
    permutation = {key: _written(out / f"{name}_perm_{key}", kind, mesh) for key, _ in FWE_MAPS if key in permuted}
    return make_group_report(model, {contrast: contrast}, first_level_contrast=args.first_level_contrast,
                             nonparametric={k: v for k, v in permutation.items() if v is not None} or None,
                             stat_maps={contrast: _written(out / f"{name}_{OUTPUT_SUFFIX['z_score']}", kind, mesh)},
                             two_sided=args.two_sided, mesh=args.mesh if kind == "cifti" else None)


def _written(stem: Path, kind: str, mesh=None):
    """A map :func:`write_map` wrote (None if it did not): NIfTI, CIFTI, or on ``mesh`` its GIfTI parts."""
    import nibabel as nib

    if kind != "surface":
        path = stem.parent / (stem.name + (".dscalar.nii" if kind == "cifti" else ".nii.gz"))
        return nib.load(path) if path.exists() else None
    from nilearn.surface import SurfaceImage

    from daskglm.io.gifti import HEMI_LABELS

    paths = {part: stem.parent / f"{stem.name}_hemi-{HEMI_LABELS.get(part, part)}.func.gii" for part in mesh.parts}
    if not all(p.exists() for p in paths.values()):
        return None
    return SurfaceImage(mesh=mesh, data={part: nib.load(p).darrays[0].data for part, p in paths.items()})


@command()
def cmd_group(args) -> int:
    """``daskglm group``: second-level maps (and permutation maps) from a study store."""
    from daskglm.group.maskers import masker_space
    from daskglm.group.model import SecondLevelModel, second_level_con_val

    _check(args)
    out = Path(args.output)
    design = _design(args.design)
    model = SecondLevelModel(mask_img=args.mask, smoothing_fwhm=args.smoothing_fwhm)
    model.fit(args.store, design_matrix=design, subjects=args.subjects,
              variance_input="first_level" if args.mixed_effects else None)
    second_level_con_val(args.contrast, model.design_matrix_)  # parsed, never evaluated: fail before writing
    _check_topology(model, args)
    out.mkdir(parents=True, exist_ok=True)
    n = model.design_matrix_.shape[0]
    name = safe_filename(args.contrast or model.design_matrix_.columns[0])
    elements = masker_space(model.masker_).element_name
    print(f"{n} subjects, {model.n_elements_:,} {elements}, design columns: "
          + ", ".join(map(str, model.design_matrix_.columns)))
    model.design_matrix_.to_csv(out / "design_matrix.tsv", sep="\t", index=False)
    _parametric(model, args, out, name)
    permuted = _permutations(args, model.design_matrix_, out, name) if args.permutations else []
    with local_progress(not args.no_progress and args.client is None):
        report = _report(model, args, out, name, masker_space(model.masker_).kind, permuted)
    report.save_as_html(out / "report.html")
    print(f"Group maps, design and report.html written to {out}", file=sys.stdout)
    return 0
