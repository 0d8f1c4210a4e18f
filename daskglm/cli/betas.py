"""``daskglm betas``: single-trial betas (LSA / LSS) of runs, to a Zarr store and optional NIfTI beta series.

Map outputs follow NiBetaSeries' naming:
``sub-XX_[ses-YY_]task-ZZ_[run-N_]desc-<trial type>_betaseries.nii.gz`` with
the entities of the run's file name when it is BIDS-like (else the run's
file stem), plus ``..._desc-trials_events.tsv`` listing the trials.  CIFTI
runs give ``..._betaseries.dscalar.nii`` (one map per trial), surface runs
one ``..._hemi-L_desc-<trial type>_betaseries.func.gii`` per hemisphere.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from daskglm.cli.runtime import command
from daskglm.cli.values import add_confounds_columns, add_confounds_strategy, confounds_tables
from daskglm.errors import UsageError

__all__ = ["add_betas", "cmd_betas", "betaseries_prefix", "check_labels", "bids_beta_series"]

_ENTITIES = ("sub", "ses", "task", "acq", "run", "space")


def add_betas(sub, parents: list, formatter_class) -> argparse.ArgumentParser:
    """Add ``betas`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "betas", parents=parents, formatter_class=formatter_class,
        help="single-trial betas (LSA / LSS beta series) of runs, every trial from one pass per run",
        description=(
            "Estimate one beta map per trial (nilearn's LSA or LSS recipes, or Mumford's LSS-1) with "
            "BetaSeriesModel: each run is streamed once and every trial's model is solved exactly from its "
            "statistics (docs/single_trial.md). Writes a Zarr store (reopened with daskglm.open_model) and, "
            "with --nifti-out, one image per trial type and run (one map per trial): .nii.gz for NIfTI runs, "
            ".dscalar.nii for CIFTI runs."
        ),
        epilog="examples:\n"
               "  daskglm betas sub-01_task-x_run-1_bold.nii.gz --events run1_events.tsv --t-r 2 "
               "--method lss -o betas.zarr --nifti-out betas/\n"
               "  daskglm betas run1.nii.gz run2.nii.gz --events ev1.tsv ev2.tsv --t-r 2 --mask mask.nii.gz "
               "-o betas.zarr",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="4D runs (.nii, .nii.gz, .dtseries.nii)")
    p.add_argument("--events", nargs="+", required=True, metavar="TSV",
                   help="events tables (onset, duration, trial_type), one per run")
    p.add_argument("--t-r", type=float, required=True, metavar="SECONDS", help="repetition time")
    p.add_argument("--method", choices=["lss", "lsa", "lss1"], default="lss",
                   help="lss: nilearn's LSS (other trials kept in their conditions); lsa: one column per "
                        "trial; lss1: the other trials in one column (Mumford 2012)")
    p.add_argument("-o", "--output", required=True, metavar="STORE", help="Zarr store to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--nifti-out", metavar="DIR",
                   help="also write the beta series as images, one per trial type and run: 4D .nii.gz for NIfTI "
                        "runs, .dscalar.nii (one map per trial) for CIFTI runs")
    p.add_argument("--confounds", nargs="+", metavar="FILE",
                   help="confounds per run: .tsv/.csv with a header (fMRIPrep's *_desc-confounds_timeseries.tsv: "
                        "choose with --confounds-strategy or --confounds-columns), or whitespace-separated "
                        "columns without header (SPM rp_*.txt, FSL .par, AFNI .1D)")
    add_confounds_strategy(p, "Without --confounds, each run's table is found next to it, as load_confounds "
                              "finds it.")
    add_confounds_columns(p)
    p.add_argument("--mask", metavar="NIFTI", help="analysis mask (default: nilearn's EPI mask)")
    p.add_argument("--smoothing-fwhm", type=float, metavar="MM", default=None)
    p.add_argument("--noise-model", default="ar1", help="ar1 (default, nilearn's), ols, or arN")
    p.add_argument("--hrf-model", default="glover", help="nilearn's hrf_model (default glover)")
    p.add_argument("--high-pass", type=float, default=0.01, metavar="HZ")
    p.set_defaults(func=cmd_betas)
    return p


def betaseries_prefix(run: str) -> str:
    """The output name stem of a run: its BIDS entities (``sub-01_task-x_run-1``), else its file stem."""
    name = Path(str(run)).name
    name = re.sub(r"(\.dtseries)?\.nii(\.gz)?$", "", name)
    found = dict(re.findall(r"(?:^|_)([a-zA-Z]+)-([a-zA-Z0-9]+)", name))
    entities = [f"{key}-{found[key]}" for key in _ENTITIES if key in found and key != "space"]
    return "_".join(entities) if "sub" in found else name


def _label(trial_type: str) -> str:
    """A BIDS-safe ``desc`` label (alphanumerics only)."""
    return re.sub(r"[^a-zA-Z0-9]", "", str(trial_type)) or "trial"


def check_labels(trials) -> None:
    """Refuse trial types of one run that share a file label (``face-up`` and ``face_up``: ``desc-faceup``).

    Parameters
    ----------
    trials : pandas.DataFrame
        A beta series' trials (``run``, ``trial_type``).

    Raises
    ------
    daskglm.errors.UsageError
        Naming the run, the trial types and their label (one file would overwrite the other).
    """
    for run, own in trials.groupby("run", sort=True):
        seen = {}
        for trial_type in own["trial_type"].unique():
            label = _label(trial_type)
            if label in seen:
                raise UsageError(
                    f"Trial types {seen[label]!r} and {trial_type!r} of run {run} both give the file label "
                    f"desc-{label} (labels keep letters and digits only), so one beta-series file would "
                    "overwrite the other; rename one of them in the events."
                )
            seen[label] = trial_type


@command()
def cmd_betas(args) -> int:
    """``daskglm betas``: a BetaSeriesModel fit, written to a store (and NIfTI)."""
    from daskglm.betas.model import BetaSeriesModel

    if len(args.events) != len(args.runs):
        raise UsageError(f"{len(args.runs)} run(s) but {len(args.events)} events table(s): give one per run.")
    if args.confounds and len(args.confounds) != len(args.runs):
        raise UsageError(f"{len(args.runs)} run(s) but {len(args.confounds)} confounds table(s).")
    for path in [*args.runs, *args.events, *(args.confounds or [])]:
        if "://" not in path and not Path(path).exists():
            raise FileNotFoundError(f"{path!r} does not exist.")
    if Path(args.output).exists() and not args.overwrite:
        raise UsageError(f"{args.output!r} exists; pass --overwrite to replace it.")
    start = time.perf_counter()
    model = BetaSeriesModel(
        method=args.method, t_r=args.t_r, mask_img=args.mask, smoothing_fwhm=args.smoothing_fwhm,
        noise_model=args.noise_model, hrf_model=args.hrf_model, high_pass=args.high_pass,
    )
    model.fit(args.runs, args.events, confounds=confounds_tables(args, args.runs))
    if args.nifti_out:
        check_labels(model.trials_)  # before any computation
    model.persist()
    model.to_zarr(args.output, overwrite=args.overwrite)
    trials = model.trials_
    print(f"{len(trials)} trial betas of {len(args.runs)} run(s) -> {args.output}", file=sys.stdout)
    if args.nifti_out:
        _write_nifti(model, args.runs, Path(args.nifti_out))
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stdout)
    return 0


def bids_beta_series(args, strategy, options) -> int:
    """``daskglm bids ... --beta-series METHOD``: each subject's runs as a beta series.

    One store per subject, ``STORE/sub-<id>_betaseries.zarr`` (reopened with
    ``daskglm.open_model``), and the NiBetaSeries-named maps and trials table
    in ``--bids-out DIR/sub-<id>/func`` (default ``STORE/sub-<id>/func``).  The
    subjects' runs, events, confounds and sample masks are those of
    :func:`daskglm.first_level_from_bids`; a failed subject does not stop the others.
    """
    import inspect

    from daskglm.betas.model import BetaSeriesModel
    from daskglm.studies.bids.first_level import first_level_from_bids

    if "://" in str(args.store):
        raise UsageError("--beta-series writes local stores; give a local STORE directory.")
    ignored = [flag for flag, given in (("--contrast", args.contrast), ("--resume", args.resume),
                                        ("--convert-to-zarr", args.convert_to_zarr)) if given]
    if ignored:
        raise UsageError(f"--beta-series does not take {', '.join(ignored)} (each subject is refitted; "
                         "beta series have no contrasts).")
    if args.mask == "per-subject":
        raise UsageError("--beta-series takes --mask epi or derivatives (not per-subject).")
    kwargs = {f"confounds_{key}": value for key, value in (options or {}).items()}
    if strategy is not None:
        kwargs["confounds_strategy"] = strategy
    models, imgs, events, confounds = first_level_from_bids(
        args.dataset, args.task, space_label=args.space, sub_labels=args.sub, exclude_subjects=args.exclude_sub,
        derivatives_folder=args.derivatives, mask_img="derivatives" if args.mask == "derivatives" else None,
        smoothing_fwhm=args.smoothing_fwhm, noise_model=args.noise_model, hrf_model=args.hrf_model, **kwargs,
    )
    accepted = set(inspect.signature(BetaSeriesModel).parameters) - {"method"}
    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    failed = 0
    for glm, run_imgs, run_events, run_confounds in zip(models, imgs, events, confounds):
        sid = glm.subject_label
        target = store / f"sub-{sid}_betaseries.zarr"
        try:
            if target.exists() and not args.overwrite:
                raise UsageError(f"{target} exists; pass --overwrite to replace it.")
            params = {k: v for k, v in glm.get_params().items() if k in accepted}
            model = BetaSeriesModel(method=args.beta_series, **params)
            model.fit(run_imgs, run_events, confounds=run_confounds)
            check_labels(model.trials_)
            model.persist()
            model.to_zarr(target, overwrite=args.overwrite)
            maps = Path(args.bids_out) if args.bids_out else store
            _write_nifti(model, [str(r) for r in run_imgs], maps / f"sub-{sid}" / "func")
            print(f"sub-{sid}: {len(model.trials_)} trial betas of {len(run_imgs)} run(s) -> {target}")
        except Exception as error:  # one subject's failure does not stop the others
            failed += 1
            print(f"daskglm bids: error: sub-{sid}: {error}", file=sys.stderr)
    return 1 if failed else 0


def _write_nifti(model, runs: list, out: Path) -> None:
    """Each run's beta series, one image per trial type, and its trials table, in ``out``.

    The image's format is the runs': 4D ``.nii.gz`` (volumes), ``.dscalar.nii``
    (CIFTI, one map per trial) or one ``.func.gii`` per hemisphere (surfaces).  Its callers
    have run :func:`check_labels` before computing the series.
    """
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    trials = model.trials_
    betas = model.betas_
    space = model.space_
    for run_index, run in enumerate(runs):
        prefix = betaseries_prefix(run)
        if sum(betaseries_prefix(r) == prefix for r in runs) > 1:
            prefix = f"{prefix}_run-{run_index + 1}"
        own = trials[trials["run"] == run_index]
        own.drop(columns="run").to_csv(out / f"{prefix}_desc-trials_events.tsv", sep="\t", index=False)
        for trial_type in own["trial_type"].unique():
            rows = own.index[own["trial_type"] == trial_type].to_numpy()
            image = space.unmask(np.asarray(betas.data[rows]), f"{trial_type} betas")
            for path in _save_series(image, space.kind, out, prefix, _label(trial_type)):
                print(f"  {path}", file=sys.stdout)


def _save_series(image, kind: str, out: Path, prefix: str, label: str) -> list[Path]:
    """Write one beta-series image in its space's format; the paths written."""
    if kind == "volume":
        path = out / f"{prefix}_desc-{label}_betaseries.nii.gz"
    elif kind == "cifti":
        path = out / f"{prefix}_desc-{label}_betaseries.dscalar.nii"
    else:
        from daskglm.io.gifti import HEMI_LABELS, write_surface_parts

        return write_surface_parts(image, {
            part: out / f"{prefix}_hemi-{HEMI_LABELS.get(part, part)}_desc-{label}_betaseries.func.gii"
            for part in image.mesh.parts})
    image.to_filename(path)
    return [path]
