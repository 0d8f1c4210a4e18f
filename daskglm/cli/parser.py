"""The ``daskglm`` argument parser (argparse): what the command line accepts, one sub-parser per command.

This module declares the commands, options, choices and help texts; what
the given strings mean (contrast definitions, ``KEY=VALUE`` options, the
``FirstLevelModel`` parameters of ``daskglm fit``) is read by
:mod:`daskglm.cli.values`, and each command runs in :mod:`daskglm.cli.commands`.

Every command gets ``--scheduler`` and ``--progress``/``--no-progress`` from
:func:`common_options` (progress bars by default only when stderr is a
terminal, :func:`resolve_progress`); ``fit`` has an option for every
``FirstLevelModel`` parameter but those in :data:`FIT_EXCLUDED`.  Each
command's handler (:mod:`daskglm.cli.commands`) is its sub-parser's ``func``
default.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from daskglm.cli.betas import add_betas
from daskglm.cli.bids import add_bids
from daskglm.cli.commands import cmd_contrast, cmd_demo, cmd_fit, cmd_fit_subjects, cmd_migrate, cmd_report
from daskglm.cli.convert import add_convert
from daskglm.cli.group import add_group
from daskglm.cli.runtime import PROG
from daskglm.cli.surfaces import MESH_TYPES
from daskglm.cli.values import SIGNAL_SCALINGS, add_confounds_columns, add_confounds_strategy
from daskglm.glm.contrasts import OUTPUT_SUFFIX, OUTPUT_TYPES
from daskglm.kernels.fit import MAX_AR_ORDER, NOISE_MODELS

__all__ = ["build_parser", "common_options", "resolve_progress", "add_demo", "add_fit", "add_contrast",
           "add_report", "add_fit_subjects", "FIT_OPTIONS", "FIT_EXCLUDED"]

#: ``daskglm fit`` option (argparse dest) for each ``FirstLevelModel`` parameter it sets.
FIT_OPTIONS = {
    "t_r": "t_r", "slice_time_ref": "slice_time_ref", "hrf_model": "hrf_model",
    "drift_model": "drift_model", "high_pass": "high_pass", "drift_order": "drift_order",
    "fir_delays": "fir_delays", "min_onset": "min_onset", "mask": "mask_img",
    "smoothing_fwhm": "smoothing_fwhm", "signal_scaling": "signal_scaling",
    "noise_model": "noise_model", "keep_residuals": "minimize_memory", "subject_label": "subject_label",
    "whitening": "whitening", "chunks": "chunks", "diagnostic_lags": "diagnostic_lags",
    "target_affine": "target_affine", "target_shape": "target_shape",
}
#: The file name part of each ``--output-type`` of ``daskglm contrast``, as its help states it.
_MAP_NAMES = ", ".join(f"{suffix} ({kind})" for kind, suffix in OUTPUT_SUFFIX.items())
#: ``FirstLevelModel`` parameters without a ``daskglm fit`` option, and why.
FIT_EXCLUDED = {
    "memory": "nilearn's joblib cache: no effect in daskglm (the fit store is the cache)",
    "memory_level": "nilearn's joblib cache level: no effect in daskglm",
    "standardize": "accepted for nilearn compatibility, no effect (signal scaling is --signal-scaling)",
    "verbose": "no effect in daskglm; the CLI shows progress bars (--progress/--no-progress)",
    "n_jobs": "parallelism is dask's: --scheduler",
    "random_state": "nilearn's KMeans seed for AR bins; daskglm bins deterministically",
    "reports": "the report is its own command: daskglm report",
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps long description lines, keeps the epilog's examples as written; shows
    meaningful defaults only."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            if len(line) > width and not line[:1].isspace():
                lines.append(textwrap.fill(line, width, initial_indent=indent,
                                           subsequent_indent=indent))
            else:
                lines.append(indent + line)
        return "\n".join(lines)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})"


def common_options() -> argparse.ArgumentParser:
    """Parent parser with ``--scheduler`` and ``--no-progress``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("execution")
    group.add_argument(
        "--scheduler", metavar="SCHEDULER", default=None,
        help="dask scheduler: 'threads', 'processes', 'synchronous', or the address of a "
             "dask.distributed scheduler (e.g. tcp://host:8786). Default: dask's default (threads).",
    )
    group.add_argument("--progress", dest="no_progress", action="store_const", const=False, default=None,
                       help="show progress bars even when stderr is not a terminal")
    group.add_argument("--no-progress", dest="no_progress", action="store_const", const=True,
                       help="do not show progress bars (default when stderr is not a terminal, "
                            "e.g. in logs and batch jobs)")
    return parent


def resolve_progress(args: argparse.Namespace) -> argparse.Namespace:
    """Progress bars only on a terminal unless ``--progress``/``--no-progress`` says otherwise."""
    if getattr(args, "no_progress", False) is None:
        args.no_progress = not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    return args


def _contrast_arguments(parser: argparse.ArgumentParser, required_hint: str) -> None:
    parser.add_argument(
        "contrast", nargs="*", metavar="CONTRAST",
        help="NAME=DEFINITION or DEFINITION; a definition is an expression over the design "
             "column names ('audio - visual') or a JSON array ('[-1,-1,1,1]' for t, "
             f"'[[1,0],[0,1]]' for F). {required_hint}",
    )
    parser.add_argument("-f", "--contrasts-file", metavar="JSON",
                        help="JSON file mapping contrast names to definitions")


def add_demo(sub) -> argparse.ArgumentParser:
    """Add ``demo`` to the subparsers ``sub``."""
    from daskglm.cli.demo import DEMO_N_SCANS, DEMO_SHAPE

    p = sub.add_parser(
        "demo", parents=[common_options()], formatter_class=_Formatter,
        help="simulate a FIAC-like dataset and run the two-runs example end to end",
        description="Simulate a FIAC-like two-run dataset with known activations, then run "
                    "nilearn's two-runs example with daskglm: per-run fits, fixed effects, the "
                    "multi-run fit, eight contrasts (z maps to NIfTI), PNG plots, the fit store "
                    "and an HTML report.",
        epilog="example:\n  daskglm demo --out daskglm_demo\n  then open daskglm_demo/report.html",
    )
    p.add_argument("-o", "--out", default="daskglm_demo", metavar="DIR", help="output folder")
    p.add_argument("--shape", type=int, nargs=3, default=list(DEMO_SHAPE), metavar=("X", "Y", "Z"),
                   help="grid of the simulated runs (3 mm voxels)")
    p.add_argument("--n-scans", type=int, default=DEMO_N_SCANS, help="scans per run")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the steps")
    p.set_defaults(func=cmd_demo)
    return p


def add_fit(sub) -> argparse.ArgumentParser:
    """Add ``fit`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "fit", parents=[common_options()], formatter_class=_Formatter,
        help="fit a first-level GLM to one or more runs and write the fit store",
        description="Fit nilearn's first-level GLM to 4D NIfTI runs, CIFTI-2 dense time series "
                    "(.dtseries.nii) or GIfTI surface runs (one .func.gii per hemisphere), streaming "
                    "each run once, and write the fit to a Zarr store. New contrasts are then computed "
                    "from the store with 'daskglm contrast', without refitting.",
        epilog="examples:\n"
               "  daskglm fit run1.nii.gz run2.nii.gz --design d1.npz d2.npz --mask mask.nii.gz "
               "--smoothing-fwhm 5 -o fit.zarr\n"
               "  daskglm fit run1.nii.gz --events events.tsv --t-r 2.5 -o fit.zarr "
               "--scheduler tcp://scheduler:8786\n"
               "  daskglm fit sub-01_task-x_space-fsLR_den-91k_bold.dtseries.nii --events events.tsv "
               "--t-r 0.72 -o fit.zarr\n"
               "  daskglm fit --left-run run1_hemi-L.func.gii run2_hemi-L.func.gii "
               "--right-run run1_hemi-R.func.gii run2_hemi-R.func.gii --mesh fsaverage5 "
               "--events ev1.tsv ev2.tsv --t-r 2 -o fit.zarr",
    )
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="4D NIfTI run(s) (.nii, .nii.gz) or CIFTI-2 dense time series (.dtseries.nii); "
                        "GIfTI runs go with --left-run / --right-run")
    p.add_argument("-o", "--output", required=True, metavar="STORE", help="Zarr store to write")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true",
                      help="replace an existing store (the old fit stays readable until the new one is written)")
    mode.add_argument("--resume", action="store_true",
                      help="keep the runs the store already holds for the same inputs and parameters (e.g. "
                           "after an interrupted fit: each run is kept as soon as it is fitted) and fit the rest")
    surface = p.add_argument_group("GIfTI surface runs (one file per hemisphere and run)")
    surface.add_argument("--left-run", nargs="+", metavar="FUNC_GII",
                         help="left-hemisphere .func.gii of each run (nilearn's 'left' mesh part)")
    surface.add_argument("--right-run", nargs="+", metavar="FUNC_GII",
                         help="right-hemisphere .func.gii of each run, in the order of --left-run")
    surface.add_argument("--mesh", nargs="+", metavar="MESH",
                         help="the runs' mesh: fsaverage5 (shipped with nilearn) or the .surf.gii file of "
                              "each hemisphere (LEFT RIGHT; one file for a one-hemisphere fit)")
    surface.add_argument("--left-mask", metavar="GII",
                         help="left-hemisphere GIfTI mask (non-zero = in), with --right-mask")
    surface.add_argument("--right-mask", metavar="GII",
                         help="right-hemisphere GIfTI mask (non-zero = in), with --left-mask")
    surface.add_argument("--mesh-type", choices=MESH_TYPES, default="pial",
                         help="which of nilearn's fsaverage5 meshes, with --mesh fsaverage5 (the mesh "
                              "sets the smoothing's vertex areas)")
    design = p.add_argument_group("design (one file per run)")
    design.add_argument("--design", nargs="+", metavar="FILE",
                        help="design matrices: .npz (key X), .npy, .csv or .tsv")
    design.add_argument("--events", nargs="+", metavar="TSV",
                        help="events tables (onset, duration, trial_type); needs --t-r")
    design.add_argument("--confounds", nargs="+", metavar="FILE",
                        help="confounds per run, with --events: .tsv/.csv with a header (fMRIPrep's "
                             "*_desc-confounds_timeseries.tsv: choose with --confounds-strategy or "
                             "--confounds-columns), or whitespace-separated columns without header (SPM "
                             "rp_*.txt, FSL .par, AFNI .1D; six columns are named motion_0..motion_5, others "
                             "col_N)")
    add_confounds_strategy(design, "Without --confounds, each run's table is found next to it, as "
                                   "load_confounds finds it.")
    add_confounds_columns(design)
    design.add_argument("--t-r", type=float, metavar="SECONDS",
                        help="repetition time (a warning tells when it differs from the runs' header)")
    design.add_argument("--slice-time-ref", type=float, default=0.0, metavar="FRACTION",
                        help="fraction of the TR at which the design is sampled (0 to 1)")
    design.add_argument("--hrf-model", default="glover",
                        help="HRF model: glover, spm, 'glover + derivative', 'spm + derivative + "
                             "dispersion', fir, ...")
    design.add_argument("--fir-delays", type=int, nargs="+", metavar="SCANS",
                        help="FIR delays in scans, with --hrf-model fir (default: 0 only)")
    design.add_argument("--drift-model", default="cosine", choices=("cosine", "polynomial", "none"),
                        help="drift model")
    design.add_argument("--high-pass", type=float, default=0.01, metavar="HZ",
                        help="high-pass cut-off of the cosine drifts")
    design.add_argument("--drift-order", type=int, default=1, metavar="N",
                        help="order of the polynomial drifts")
    design.add_argument("--min-onset", type=float, default=-24, metavar="SECONDS",
                        help="earliest onset taken into account")
    design.add_argument("--sample-mask", nargs="+", metavar="FILE",
                        help="one text file per run: the scans to keep (indices, or one 0/1 per scan); "
                             "censored scans are left out of the fit, as nilearn's sample_masks")
    design.add_argument("--drop-initial", type=int, default=0, metavar="N",
                        help="leave out the first N scans of every run (non-steady-state volumes)")
    model = p.add_argument_group("model")
    model.add_argument("--mask", metavar="MASK",
                       help="analysis mask on the runs' grid (resample it beforehand, e.g. with "
                            "nilearn.image.resample_to_img); default: nilearn's EPI mask of the runs; "
                            "'none': all voxels. CIFTI runs: a .dscalar.nii over their grayordinates "
                            "(default: all grayordinates). GIfTI runs: --left-mask / --right-mask, or "
                            "'none' (default: the vertices finite in every scan, as nilearn)")
    model.add_argument("--target-affine", metavar="MM|NIFTI|JSON",
                       help="resample the runs: a voxel size in mm (3x3 affine), the grid of a NIfTI "
                            "image (its affine and, unless --target-shape, its shape), or a JSON 3x3/4x4 "
                            "matrix")
    model.add_argument("--target-shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                       help="shape of the resampled grid (with a 4x4 --target-affine)")
    model.add_argument("--smoothing-fwhm", type=float, metavar="MM",
                       help="Gaussian smoothing FWHM in mm (GIfTI runs: nilearn's surface smoothing on the "
                            "mesh; not available for CIFTI runs, which hold no mesh)")
    model.add_argument("--signal-scaling", choices=tuple(SIGNAL_SCALINGS), default="0",
                       metavar="SCALING",
                       help="0: percent signal change per voxel (nilearn's default); 1: per scan; "
                            "0,1: both (one word); none: no scaling")
    model.add_argument("--noise-model", choices=NOISE_MODELS, default="ar1",
                       metavar=f"{{ols,ar1,...,ar{MAX_AR_ORDER}}}", help="noise model")
    model.add_argument("--whitening", choices=("binned", "exact"), default="binned",
                       help="'binned': nilearn's AR(1) bins; 'exact': per-voxel bias-corrected AR(p) "
                            "(nominal false-positive rates, docs/statistics.md)")
    model.add_argument("--diagnostic-lags", type=int, metavar="K",
                       help="residual autocorrelation lags kept as whitening diagnostics (default: 3 "
                            "with --whitening exact, else 0)")
    model.add_argument("--keep-residuals", action="store_true",
                       help="minimize_memory=False: also write residuals, predictions and R^2 "
                            "(a second pass) to STORE_timeseries.zarr")
    model.add_argument("--subject-label", metavar="LABEL", help="subject label kept with the fit")
    model.add_argument("--chunks", type=int, nargs=2, metavar=("TIME", "VOXELS"),
                       help="volumes per read and voxels per solve block (default: automatic)")
    bids = p.add_argument_group("BIDS derivatives")
    bids.add_argument("--bids-out", metavar="DIR",
                      help="also write BIDS derivatives there, named as nilearn's save_glm_to_bids (contrast "
                           "maps, mask, designs, statmap.json), for the --contrast given")
    bids.add_argument("--contrast", action="append", default=None, metavar="NAME=EXPR",
                      help="contrast of --bids-out (repeatable): NAME=EXPR or EXPR over the design's columns")
    p.set_defaults(func=cmd_fit)
    return p


def add_contrast(sub) -> argparse.ArgumentParser:
    """Add ``contrast`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "contrast", parents=[common_options()], formatter_class=_Formatter,
        help="compute contrasts from a fit store and write them to NIfTI, CIFTI or GIfTI",
        description="Compute contrasts from a store written by 'daskglm fit' (no refit) and write "
                    "the maps to NIfTI files named <contrast>_<map>.nii.gz, where <map> names the "
                    f"--output-type: {_MAP_NAMES}; CIFTI fits: <contrast>_<map>.dscalar.nii; GIfTI fits: "
                    "<contrast>_<map>_hemi-L.func.gii and _hemi-R.func.gii (e.g. audio_z_map.nii.gz). "
                    "With several runs, runs are combined by fixed effects. BIDS-named maps "
                    "(contrast-<name>_stat-<z|t|F|...>_statmap.nii.gz, as nilearn's save_glm_to_bids) come "
                    "from 'daskglm bids --bids-out'.",
        epilog="examples:\n"
               "  daskglm contrast fit.zarr 'DSt_minus_SSt=[-1,-1,1,1]' -o results\n"
               "  daskglm contrast fit.zarr 'audio - visual' --output-type z_score effect_size\n"
               "  daskglm contrast fit.zarr -f contrasts.json -o results",
    )
    p.add_argument("store", metavar="STORE", help="fit store written by 'daskglm fit'")
    _contrast_arguments(p, "At least one contrast or --contrasts-file is needed.")
    p.add_argument("-t", "--output-type", nargs="+", choices=OUTPUT_TYPES, default=["z_score"],
                   metavar="TYPE", help=f"maps to write: {', '.join(OUTPUT_TYPES)}")
    p.add_argument("--stat-type", choices=("t", "F"), default=None,
                   help="force t or F (default: 1-D contrasts are t, 2-D are F)")
    p.add_argument("-o", "--out-dir", default="results", metavar="DIR", help="folder of the map files")
    p.add_argument("--quiet-warnings", action="store_true",
                   help="hide nilearn-style warnings (zero-padding, one contrast for all runs)")
    p.set_defaults(func=cmd_contrast)
    return p


def add_report(sub) -> argparse.ArgumentParser:
    """Add ``report`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "report", parents=[common_options()], formatter_class=_Formatter,
        help="write the HTML report of a fit store",
        description="Write a single self-contained HTML report of a fit store: model parameters, "
                    "mask, design matrices, whitening diagnostics, and per contrast the contrast "
                    "matrix, the thresholded stat map and the cluster table.",
        epilog="examples:\n  daskglm report fit.zarr -f contrasts.json --bg-img mean.nii.gz -o report.html\n"
               "  daskglm report cifti_fit.zarr 'task - rest' --mesh L.midthickness.surf.gii "
               "R.midthickness.surf.gii -o report.html",
    )
    p.add_argument("store", metavar="STORE", help="fit store written by 'daskglm fit'")
    _contrast_arguments(p, "At least one contrast or --contrasts-file is needed.")
    p.add_argument("-o", "--output", default="report.html", metavar="HTML", help="report file")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument("--bg-img", metavar="NIFTI",
                   help="background of the mask and stat maps (e.g. an anatomical image on the runs' grid); "
                        "default: the fit's mean image, kept in the store")
    p.add_argument("--height-control", choices=("fpr", "fdr", "bonferroni", "none"), default="fpr",
                   help="multiple-comparison control of the height threshold")
    p.add_argument("--alpha", type=float, default=0.001, help="error rate of the height control")
    p.add_argument("--threshold", type=float, default=None,
                   help="z threshold with --height-control none (default: 3.09)")
    p.add_argument("--cluster-threshold", type=int, default=0, metavar="VOXELS",
                   help="minimum cluster size")
    p.add_argument("--two-sided", action="store_true", help="threshold and tabulate negative values too")
    p.add_argument("--glass-brain", action="store_true", help="add a glass-brain view per contrast")
    p.add_argument("--mesh", nargs="+", metavar="SURF_GII",
                   help="CIFTI fits: the surfaces their cortex lies on (e.g. fsLR 32k LEFT.surf.gii "
                        "RIGHT.surf.gii) to draw the maps; without it the report tabulates the "
                        "grayordinates per brain structure")
    p.add_argument("--mesh-type", choices=MESH_TYPES, default="pial", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_report)
    return p


def add_fit_subjects(sub) -> argparse.ArgumentParser:
    """Add ``fit-subjects`` to the subparsers ``sub``.

    Its handler returns exit status 0, or 1 if the spec cannot be used or
    any subject failed.
    """
    p = sub.add_parser(
        "fit-subjects", parents=[common_options()], formatter_class=_Formatter,
        help="fit many subjects in one dask graph into one store",
        description=(
            "Fit every subject of a JSON (or YAML) spec file in one dask graph and write "
            "<store>/sub-<id> for each.  Spec: {\"model\": {FirstLevelModel parameters}, "
            "\"subjects\": {\"01\": {\"run_imgs\": [...], \"design_matrices\": [...]} or "
            "{\"run_imgs\": [...], \"events\": [...], \"confounds\": [...]}}}.  Relative paths "
            "are relative to the spec file.  A failed subject does not stop the others."
        ),
        epilog="examples:\n"
               "  daskglm fit-subjects study.json study.zarr --scheduler tcp://scheduler:8786\n"
               "  daskglm fit-subjects study.json s3://bucket/study.zarr --resume "
               "--storage-option endpoint_url=http://minio:9000",
    )
    p.add_argument("spec", help="spec file (.json, or .yaml/.yml)")
    p.add_argument("store", help="output store: directory or fsspec URL (s3://bucket/study.zarr)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="keep runs already complete in the store (same inputs and parameters)")
    mode.add_argument("--overwrite", action="store_true", help="replace existing subject stores")
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE",
                   help="fsspec storage option (repeatable), e.g. endpoint_url=http://...")
    p.set_defaults(func=cmd_fit_subjects)
    return p


def add_migrate(sub) -> argparse.ArgumentParser:
    """Add ``migrate`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "migrate", parents=[common_options()], formatter_class=_Formatter,
        help="rewrite an older fit store in the current format (chunk checksums)",
        description="Rewrite a fit store written by an older daskglm (format 1 or 2) in the current "
                    "format, in place and atomically: every chunk gets a CRC-32C checksum. The old "
                    "fit stays readable until the new one is committed.",
        epilog="example:\n  daskglm migrate fit.zarr",
    )
    p.add_argument("store", metavar="STORE", help="fit store (directory or fsspec URL)")
    p.set_defaults(func=cmd_migrate)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``daskglm`` argument parser."""
    from daskglm._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter,
        description="Out-of-core first-level fMRI GLM (nilearn's FirstLevelModel on dask, xarray "
                    "and Zarr).",
        epilog="Start with:  daskglm demo --out daskglm_demo\n"
               "Help on a command:  daskglm COMMAND --help",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback on errors (for bug reports)")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    add_demo(sub)
    add_fit(sub)
    add_contrast(sub)
    add_migrate(sub)
    add_report(sub)
    add_fit_subjects(sub)
    add_bids(sub, [common_options()], _Formatter)
    add_group(sub, [common_options()], _Formatter)
    add_convert(sub, [], _Formatter)
    add_betas(sub, [common_options()], _Formatter)
    return parser
