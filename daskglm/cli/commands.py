"""The handlers of the ``daskglm`` subcommands.

Each takes the parsed namespace and returns the exit status; :func:`command`
runs it under the CLI's scheduler, warning and error policy
(:mod:`daskglm.cli.runtime`).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daskglm.cli.runtime import (
    PROG,
    ErrorPolicy,
    check_writable,
    cli_words,
    command,
    compute_with_progress,
    local_progress,
    subject_failure,
    write_with_progress,
)
from daskglm.cli.surfaces import element_word, fit_runs, load_mesh, surface_mask, write_surface_maps
from daskglm.cli.values import (
    confounds_tables,
    contrasts_from_args,
    fit_model_params,
    parse_contrast,
    parse_key_values,
    safe_filename,
)
from daskglm.errors import UsageError
from daskglm.glm.contrasts import OUTPUT_SUFFIX
from daskglm.io.timing import check_runs_t_r
from daskglm.studies.subjects import fit_subjects, load_spec

__all__ = ["OUTPUT_SUFFIX", "cmd_demo", "cmd_fit", "cmd_contrast", "cmd_report", "cmd_fit_subjects",
           "cmd_migrate"]

#: ``fit-subjects`` reports any failure as ``daskglm fit-subjects: error: <type>: <message>``
#: with exit status 1, the status it also returns when some subjects failed.
SUBJECTS_ERRORS = ErrorPolicy(prefix=f"{PROG} fit-subjects", status=1, errors=(Exception,),
                              describe=subject_failure)


def _open_store(path: str):
    from daskglm.first_level.model import open_model

    if "://" not in path and not Path(path).exists():
        raise FileNotFoundError(f"The store {path!r} does not exist.")
    return open_model(path)


def _check_files(paths: Sequence[str], what: str) -> None:
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"The {what} {p!r} does not exist.")


@command()
def cmd_demo(args) -> int:
    """``daskglm demo``: simulate a dataset and run the two-runs example."""
    from daskglm.cli.demo import run_demo

    result = run_demo(args.out, shape=tuple(args.shape), n_scans=args.n_scans, seed=args.seed,
                      report=not args.no_report, verbose=not args.quiet)
    if not args.quiet:
        print(f"z maps:  {Path(args.out) / 'results'}")
        print(f"plots:   {Path(args.out) / 'plots'}")
        print(f"store:   {result['store']}")
        if result["report"]:
            print(f"report:  {result['report']}")
    return 0


def _fit_inputs(args, runs: list) -> dict[str, Any]:
    if args.design and args.events:
        raise UsageError("Give either --design or --events, not both.")
    if not args.design and not args.events:
        raise UsageError("Give the design: --design FILE per run, or --events FILE per run with --t-r.")
    for option, files in (("--design", args.design), ("--events", args.events),
                          ("--confounds", args.confounds)):
        if files:
            _check_files(files, f"{option} file")
            if len(files) != len(runs):
                raise UsageError(f"{len(files)} {option} file(s) for {len(runs)} run(s); give one per run.")
    if args.events and args.t_r is None:
        raise UsageError("--events needs --t-r (the repetition time in seconds).")
    if args.mask and args.mask != "none":
        _check_files([args.mask], "mask")
        if getattr(args, "target_affine", None) is None and isinstance(runs[0], str):
            _check_mask_grid(args.mask, runs[0])
    confounds = confounds_tables(args, runs)
    sample_masks = _sample_masks(args, runs)
    if sample_masks is not None and confounds is not None:  # --sample-mask / --drop-initial and scrubbing: both
        sample_masks = _intersect_kept(sample_masks, confounds, runs)
    return {
        "design_matrices": list(args.design) if args.design else None,
        "events": list(args.events) if args.events else None,
        "confounds": confounds,
        "sample_masks": sample_masks,
    }


def _intersect_kept(sample_masks: list, confounds: list, runs: list) -> list:
    """Scans kept by ``--sample-mask`` / ``--drop-initial`` and by the confounds' own sample masks."""
    import numpy as np

    from daskglm.glm.sample_masks import sample_masks_from_confounds

    carried = sample_masks_from_confounds(confounds)
    if carried is None:
        return sample_masks
    out = []
    for given, kept in zip(sample_masks, carried):
        if given is None or kept is None:
            out.append(kept if given is None else given)
            continue
        given = np.asarray(given)
        given = np.flatnonzero(given) if given.dtype == bool else given
        out.append(np.intersect1d(given, kept))
    return out


def _sample_masks(args, runs: list) -> list | None:
    """``--sample-mask`` files (one per run) and ``--drop-initial N`` as ``sample_masks``."""
    from daskglm.glm.sample_masks import drop_initial, read_sample_mask
    from daskglm.io.runs import as_run_source

    files = getattr(args, "sample_mask", None)
    n_drop = getattr(args, "drop_initial", 0) or 0
    if not files and not n_drop:
        return None
    if files:
        _check_files(files, "--sample-mask file")
        if len(files) != len(runs):
            raise UsageError(f"{len(files)} --sample-mask file(s) for {len(runs)} run(s); give one per run.")
    if n_drop < 0:
        raise UsageError(f"--drop-initial must be >= 0, got {n_drop}.")
    masks = []
    for i, run in enumerate(runs):
        n_scans = as_run_source(run).n_scans  # header only, any run format (NIfTI, CIFTI, GIfTI)
        mask = read_sample_mask(files[i], n_scans) if files else None
        masks.append(drop_initial(n_drop, n_scans, mask) if n_drop else mask)
    return masks


def _header_image(run: str):
    """The run as a nibabel image for its geometry only (a NIfTI-Zarr store: its header, no data read)."""
    import nibabel as nib
    import numpy as np

    from daskglm.io.nifti_zarr import NiftiZarrRunSource, is_zarr_run

    if not is_zarr_run(run):
        return nib.load(run)
    source = NiftiZarrRunSource(run)
    return nib.Nifti1Image(np.broadcast_to(np.uint8(0), source.shape), source.affine, source.header)


def _check_mask_grid(mask: str, run: str) -> None:
    """A mask on another grid than the runs: one line that says how to fix it."""
    import nibabel as nib
    import numpy as np

    mask_img, run_img = nib.load(mask), _header_image(run)
    if not (isinstance(mask_img, nib.Nifti1Image) and isinstance(run_img, nib.Nifti1Image)
            and len(run_img.shape) == 4):  # surfaces, CIFTI: their readers check their geometry
        return
    if tuple(mask_img.shape[:3]) == tuple(run_img.shape[:3]) and np.allclose(
            mask_img.affine, run_img.affine, atol=1e-4):
        return
    zooms = lambda img: "x".join(f"{z:g}" for z in img.header.get_zooms()[:3])  # noqa: E731
    raise UsageError(
        f"The mask {mask!r} ({tuple(mask_img.shape[:3])}, {zooms(mask_img)} mm) is not on the grid of the "
        f"run {run!r} ({tuple(run_img.shape[:3])}, {zooms(run_img)} mm). Resample it to the runs, e.g. "
        "nilearn.image.resample_to_img(mask, run, interpolation='nearest'), or fit on the mask's grid "
        f"with --target-affine {mask}."
    )


@command()
def cmd_fit(args) -> int:
    """``daskglm fit``: fit runs and write the fit store."""
    from daskglm.first_level.model import FirstLevelModel

    runs = fit_runs(args)
    inputs = _fit_inputs(args, runs)
    contrasts = dict(parse_contrast(c) for c in getattr(args, "contrast", None) or [])
    if getattr(args, "bids_out", None) and not contrasts:
        raise UsageError("--bids-out needs at least one --contrast.")
    if contrasts and not getattr(args, "bids_out", None):
        raise UsageError("--contrast goes with --bids-out (daskglm contrast STORE computes maps from the store).")
    out = Path(args.output)
    resume = getattr(args, "resume", False)
    if out.exists() and not (args.overwrite or resume):
        raise UsageError(f"The store {str(out)!r} exists; pass --overwrite to replace it, or --resume to keep "
                         "the runs it holds for the same inputs and parameters and fit the rest.")
    check_writable(out, directory=True)  # fail fast: before anything is computed
    if args.events:  # a --t-r that differs from a run's header: a warning
        check_runs_t_r(runs, args.t_r, given="--t-r ", used_by="the design")
    model = FirstLevelModel(**{**fit_model_params(args), "mask_img": surface_mask(args, runs)})
    model.fit(runs, **inputs)
    # no persist first: the write computes the runs, each committed to the store as soon as it is fitted, so
    # an interrupted fit leaves its finished runs for --resume
    summary = write_with_progress(model, str(out), args.client, not args.no_progress,
                                  overwrite=args.overwrite, resume=resume)
    if args.keep_residuals:
        with local_progress(not args.no_progress and args.client is None):
            series = out.with_name(out.name.removesuffix(".zarr") + "_timeseries.zarr")
            model.write_timeseries(series)
        print(f"Residuals, predictions and R^2 written to {series}")
    designs = model.design_matrices_
    reused = f" ({len(summary.reused)} reused from the store)" if summary.reused else ""
    kept, scans = sum(len(d) for d in designs), sum(model.n_scans_)
    censored = f" ({kept} of {scans} scans kept)" if kept != scans else ""
    print(f"Fitted {len(designs)} run(s){reused}{censored}, {model.n_elements_:,} {element_word(model)}, "
          f"{designs[0].shape[1]} regressors; store written to {out}")
    print("Design columns: " + ", ".join(str(c) for c in designs[0].columns))
    if args.bids_out:
        from daskglm.studies.bids.derivatives import mask_used, save_bids_derivatives

        names = [str(r) for r in (getattr(args, "left_run", None) or getattr(args, "right_run", None) or runs)]
        # locally the model reads its fit from the store; under a client, the store is reopened (no refit)
        fitted = model if args.client is None else _open_store(str(out))
        with local_progress(not args.no_progress and args.client is None):
            written = save_bids_derivatives(fitted, args.bids_out, contrasts, names,
                                            mask=mask_used(model))
        print(f"BIDS derivatives written to {written['dir']}")
    return 0


@command()
def cmd_contrast(args) -> int:
    """``daskglm contrast``: contrasts from a fit store, written to NIfTI."""

    contrasts = contrasts_from_args(args)
    model = _open_store(args.store)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_writable(out_dir / "probe", directory=False)
    types = list(dict.fromkeys(args.output_type))
    lazy, keys = [], []
    with warnings.catch_warnings():
        if args.quiet_warnings:
            warnings.simplefilter("ignore", UserWarning)
        for name, definition in contrasts.items():
            maps = model.contrast_maps(definition, stat_type=args.stat_type)
            for output_type in types:
                lazy.append(maps[output_type].data)
                keys.append((name, output_type))
    values = compute_with_progress(*lazy, client=args.client, show=not args.no_progress)
    if model.space_.kind != "volume":  # CIFTI: .dscalar.nii; GIfTI: one .func.gii per hemisphere
        for (name, output_type), array in zip(keys, values):
            stem = f"{safe_filename(name)}_{OUTPUT_SUFFIX[output_type]}"
            for path in write_surface_maps(model, array, out_dir, stem, f"{output_type} of {name}"):
                print(path)
        return 0
    for (name, output_type), array in zip(keys, values):
        path = out_dir / f"{safe_filename(name)}_{OUTPUT_SUFFIX[output_type]}.nii.gz"
        model.space_.unmask(array, f"{output_type} of {name}").to_filename(path)
        print(path)
    return 0


@command()
def cmd_report(args) -> int:
    """``daskglm report``: the HTML report of a fit store."""
    contrasts = contrasts_from_args(args)
    model = _open_store(args.store)
    if args.bg_img:
        _check_files([args.bg_img], "background image")
    mesh = _report_mesh(model, args.mesh, args.mesh_type) if args.mesh else None
    out = Path(args.output)
    if not out.parent.exists():
        raise FileNotFoundError(f"The folder {str(out.parent)!r} does not exist.")
    check_writable(out, directory=False)
    height = None if args.height_control == "none" else args.height_control
    with local_progress(not args.no_progress and args.client is None), warnings.catch_warnings():
        if args.threshold is None:  # the CLI's own default (3.09): nilearn's notice of its future default is not ours
            warnings.filterwarnings("ignore", message=r"\s*From nilearn version>=0.15, the default 'threshold'",
                                    category=FutureWarning)
        report = model.generate_report(
            contrasts, title=args.title, bg_img=args.bg_img, threshold=args.threshold,
            alpha=args.alpha, cluster_threshold=args.cluster_threshold, height_control=height,
            two_sided=args.two_sided, glass_brain=args.glass_brain, **({"mesh": mesh} if mesh else {}),
        )
    report.save_as_html(out)
    print(out)
    return 0


def _report_mesh(model, spec: list[str], mesh_type: str):
    """``daskglm report --mesh``: the surfaces a CIFTI fit's cortex is drawn on."""
    geometry = model.space_.geometry
    if model.space_.kind != "cifti":
        raise UsageError("--mesh goes with CIFTI fits (a surface fit's store keeps its mesh; volume fits "
                         "have none).")
    from daskglm.reporting.surface_report import CORTEX

    parts = tuple(p for s, p in CORTEX.items() if s in geometry.brain_models.nvertices) or ("left", "right")
    return load_mesh(list(spec), mesh_type, parts)


def _storage_options(spec: dict, items: Sequence[str] | None) -> dict | None:
    """The spec file's ``storage_options`` updated by ``--storage-option KEY=VALUE`` (JSON values, as ``bids``)."""
    options = dict(spec.get("storage_options") or {})
    options.update(parse_key_values(items, "--storage-option"))
    return options or None


@command(SUBJECTS_ERRORS, keep_active_client=True)
def cmd_fit_subjects(args) -> int:
    """``daskglm fit-subjects``: many subjects in one graph; exit status 1 if any failed."""
    spec = load_spec(args.spec)
    storage_options = _storage_options(spec, args.storage_option)
    result = fit_subjects(
        spec["subjects"], args.store, model_params=spec["model"],
        overwrite=args.overwrite, resume=args.resume,
        storage_options=storage_options, progress=not args.no_progress,
    )
    for sid, summary in result.completed.items():
        print(f"sub-{sid}: ok ({len(summary.written)} run(s) written, {len(summary.reused)} reused)")
    for sid, message in result.failed.items():
        print(f"{SUBJECTS_ERRORS.prefix}: error: sub-{sid}: {cli_words(message)}", file=sys.stderr)
    return 0 if result.ok else 1


@command()
def cmd_migrate(args) -> int:
    """``daskglm migrate``: rewrite an older fit store in the current format."""
    from daskglm.store.migrate import migrate_store

    if "://" not in args.store and not Path(args.store).exists():
        raise FileNotFoundError(f"The store {args.store!r} does not exist.")
    before, after = migrate_store(args.store)
    if before == after:
        print(f"{args.store}: already in store format {after}; nothing to do")
    else:
        print(f"{args.store}: migrated from store format {before} to {after}")
    return 0
