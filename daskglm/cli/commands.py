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

from ..errors import UsageError
from ..subjects import failure_message, fit_subjects, load_spec
from .parsing import contrasts_from_args, safe_filename
from .runtime import (
    PROG,
    ErrorPolicy,
    command,
    compute_with_progress,
    local_progress,
    persist_with_progress,
)

__all__ = ["OUTPUT_SUFFIX", "cmd_demo", "cmd_fit", "cmd_contrast", "cmd_report", "cmd_fit_subjects"]

#: File suffix of each output type (z maps named as in nilearn's example).
OUTPUT_SUFFIX = {"z_score": "z_map", "stat": "stat_map", "p_value": "p_map",
                 "effect_size": "effect_size", "effect_variance": "effect_variance"}

#: ``fit-subjects`` reports any failure as ``daskglm fit-subjects: error: <type>: <message>``
#: with exit status 1, the status it also returns when some subjects failed.
SUBJECTS_ERRORS = ErrorPolicy(prefix=f"{PROG} fit-subjects", status=1, errors=(Exception,),
                              describe=failure_message)


def _open_store(path: str):
    from ..model import open_model

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
    from ..demo import run_demo

    result = run_demo(args.out, shape=tuple(args.shape), n_scans=args.n_scans, seed=args.seed,
                      report=not args.no_report, verbose=not args.quiet)
    if not args.quiet:
        print(f"z maps:  {Path(args.out) / 'results'}")
        print(f"plots:   {Path(args.out) / 'plots'}")
        print(f"store:   {result['store']}")
        if result["report"]:
            print(f"report:  {result['report']}")
    return 0


def _fit_inputs(args) -> dict[str, Any]:
    _check_files(args.runs, "run")
    if args.design and args.events:
        raise UsageError("Give either --design or --events, not both.")
    if not args.design and not args.events:
        raise UsageError("Give the design: --design FILE per run, or --events FILE per run with --t-r.")
    for option, files in (("--design", args.design), ("--events", args.events),
                          ("--confounds", args.confounds)):
        if files:
            _check_files(files, f"{option} file")
            if len(files) != len(args.runs):
                raise UsageError(f"{len(files)} {option} file(s) for {len(args.runs)} run(s); give one per run.")
    if args.events and args.t_r is None:
        raise UsageError("--events needs --t-r (the repetition time in seconds).")
    if args.mask and args.mask != "none":
        _check_files([args.mask], "mask")
    return {
        "design_matrices": list(args.design) if args.design else None,
        "events": list(args.events) if args.events else None,
        "confounds": list(args.confounds) if args.confounds else None,
    }


@command()
def cmd_fit(args) -> int:
    """``daskglm fit``: fit runs and write the fit store."""
    from ..model import FirstLevelModel

    inputs = _fit_inputs(args)
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise UsageError(f"The store {str(out)!r} exists; pass --overwrite to replace it.")
    mask = False if args.mask == "none" else args.mask
    model = FirstLevelModel(
        t_r=args.t_r, mask_img=mask, smoothing_fwhm=args.smoothing_fwhm,
        noise_model=args.noise_model, whitening=args.whitening, hrf_model=args.hrf_model,
        drift_model=args.drift_model,
        high_pass=args.high_pass,
    )
    model.fit(list(args.runs), **inputs)
    persist_with_progress(model, args.client, not args.no_progress)
    with local_progress(not args.no_progress and args.client is None):
        model.to_zarr(str(out), overwrite=args.overwrite)
    designs = model.design_matrices_
    print(f"Fitted {len(designs)} run(s), {int(model.mask_img_.get_fdata().sum()):,} voxels, "
          f"{designs[0].shape[1]} regressors; store written to {out}")
    print("Design columns: " + ", ".join(str(c) for c in designs[0].columns))
    return 0


@command()
def cmd_contrast(args) -> int:
    """``daskglm contrast``: contrasts from a fit store, written to NIfTI."""
    from ..io.export import unmask

    contrasts = contrasts_from_args(args)
    model = _open_store(args.store)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    mask = model.mask_img_.get_fdata() != 0
    for (name, output_type), array in zip(keys, values):
        path = out_dir / f"{safe_filename(name)}_{OUTPUT_SUFFIX[output_type]}.nii.gz"
        unmask(array, mask, model.mask_img_.affine, f"{output_type} of {name}").to_filename(path)
        print(path)
    return 0


@command()
def cmd_report(args) -> int:
    """``daskglm report``: the HTML report of a fit store."""
    contrasts = contrasts_from_args(args)
    model = _open_store(args.store)
    if args.bg_img:
        _check_files([args.bg_img], "background image")
    out = Path(args.output)
    if not out.parent.exists():
        raise FileNotFoundError(f"The folder {str(out.parent)!r} does not exist.")
    height = None if args.height_control == "none" else args.height_control
    with local_progress(not args.no_progress and args.client is None):
        report = model.generate_report(
            contrasts, title=args.title, bg_img=args.bg_img, threshold=args.threshold,
            alpha=args.alpha, cluster_threshold=args.cluster_threshold, height_control=height,
            two_sided=args.two_sided, glass_brain=args.glass_brain,
        )
    report.save_as_html(out)
    print(out)
    return 0


def _storage_options(spec: dict, items: Sequence[str] | None) -> dict | None:
    """The spec file's ``storage_options`` updated by ``--storage-option KEY=VALUE``."""
    options = dict(spec.get("storage_options") or {})
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--storage-option expects KEY=VALUE, got {item!r}.")
        options[key] = value
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
        print(f"{SUBJECTS_ERRORS.prefix}: error: sub-{sid}: {message}", file=sys.stderr)
    return 0 if result.ok else 1
