"""``daskglm`` command line: ``demo``, ``fit``, ``contrast`` and ``report``.

Thin by design: each subcommand parses its options, calls the public API and
shows progress (dask's :class:`~dask.diagnostics.ProgressBar` with a local
scheduler, :func:`distributed.progress` under a ``distributed`` client).
Mistakes in the user's input (a missing file, a bad contrast, an invalid
option; the library raises ``ValueError``, ``TypeError`` or
``FileNotFoundError`` for them) end with a one-line ``daskglm: error: ...`` on
stderr and exit code 2; ``--traceback`` shows the full traceback instead.

Other modules can add subcommands: if :mod:`daskglm.subjects` exists and has
``add_subcommand(subparsers)``, it is called with the subparsers object; the
parser it adds should ``set_defaults(func=...)`` with a function taking the
parsed namespace and returning an exit code, and may use
:func:`common_options` as a parent to get ``--scheduler`` and
``--no-progress`` (then ``args.client`` holds the distributed client, if any).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError

__all__ = ["main", "build_parser", "common_options", "compute_with_progress", "parse_contrast",
           "UsageError"]

PROG = "daskglm"
LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")
OUTPUT_TYPES = ("z_score", "stat", "p_value", "effect_size", "effect_variance")
#: File suffix of each output type (z maps named as in nilearn's example).
OUTPUT_SUFFIX = {"z_score": "z_map", "stat": "stat_map", "p_value": "p_map",
                 "effect_size": "effect_size", "effect_variance": "effect_variance"}
#: Seconds of work before a local progress bar appears.
PROGRESS_MINIMUM = 0.5
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError)



# ----------------------------------------------------------------- progress
@contextlib.contextmanager
def _local_progress(show: bool) -> Iterator[None]:
    if not show:
        yield
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(minimum=PROGRESS_MINIMUM, dt=0.2, out=sys.stderr):
        yield


def compute_with_progress(*collections, client=None, show: bool = True) -> tuple:
    """``dask.compute`` with a progress bar (local bar, or distributed's under a client)."""
    import dask

    if client is None:
        with _local_progress(show):
            return dask.compute(*collections)
    persisted = client.persist(list(collections))
    if show:
        from distributed import progress

        progress(persisted)
        print(file=sys.stderr)
    return tuple(dask.compute(*persisted))


def _persist_model(model, client, show: bool) -> None:
    """Compute the fit once (the long part), with a progress bar."""
    if client is None:
        with _local_progress(show):
            model.persist()
        return
    model.persist()  # asynchronous under a client: the arrays now hold futures
    if show:
        from distributed import progress

        progress(model.results_)
        print(file=sys.stderr)


@contextlib.contextmanager
def _scheduler(spec: str | None) -> Iterator[Any]:
    """Set dask's scheduler for the command; yield the distributed client, if any."""
    import dask

    if spec is None:
        yield None
        return
    if spec in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=spec):
            yield None
        return
    if not re.match(r"^[a-z][a-z0-9+]*://\S+$", spec):
        raise UsageError(
            f"--scheduler {spec!r} is neither one of {list(LOCAL_SCHEDULERS)} nor an address "
            "like tcp://host:8786."
        )
    try:
        from distributed import Client
    except ImportError as err:
        raise UsageError(
            "--scheduler with an address needs dask.distributed: pip install 'daskglm[distributed]'."
        ) from err
    try:
        client = Client(spec, timeout="10s")
    except OSError as err:
        raise UsageError(f"Could not connect to the dask scheduler at {spec}: {err}") from err
    try:
        yield client
    finally:
        client.close()


# ---------------------------------------------------------------- contrasts
_NAMED = re.compile(r"^\s*([A-Za-z_][\w.+-]*)\s*=(?!=)\s*(.+)$", re.S)


def _parse_value(text: str):
    text = text.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"Contrast {text!r} is not a valid JSON array: {err.msg}.") from err
        return _as_numeric(value, text)
    return text


def _as_numeric(value, source: str):
    import numpy as np

    if isinstance(value, str):
        return value
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise UsageError(f"Contrast {source!r} must be an expression or an array of numbers.") from err
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise UsageError(f"Contrast {source!r} must be a 1-D (t) or 2-D (F) array, got shape {arr.shape}.")
    return arr


def parse_contrast(text: str) -> tuple[str, Any]:
    """``NAME=DEFINITION`` or ``DEFINITION`` -> ``(name, definition)``.

    A definition is an expression over the design's column names
    (``"audio - visual"``) or a JSON array: ``[-1, -1, 1, 1]`` (t) or
    ``[[1, 0], [0, 1]]`` (F).  Without a name, the definition names itself.
    """
    match = _NAMED.match(text)
    if match:
        name, definition = match.group(1), match.group(2)
    else:
        name, definition = text.strip(), text
    if not definition.strip():
        raise UsageError(f"Empty contrast in {text!r}.")
    return name, _parse_value(definition)


def _load_contrast_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"The contrasts file {path!r} does not exist.")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UsageError(f"The contrasts file {path!r} is not valid JSON: {err}.") from err
    if not isinstance(data, dict) or not data:
        raise UsageError(
            f"The contrasts file {path!r} must hold a JSON object mapping names to contrasts, "
            'e.g. {"DSt_minus_SSt": [-1, -1, 1, 1], "audio": "audio - visual"}.'
        )
    return {str(k): _as_numeric(v, f"{k} in {path}") for k, v in data.items()}


def _contrasts_from_args(args) -> dict[str, Any]:
    contrasts: dict[str, Any] = {}
    if getattr(args, "contrasts_file", None):
        contrasts.update(_load_contrast_file(args.contrasts_file))
    for text in getattr(args, "contrast", None) or []:
        name, definition = parse_contrast(text)
        contrasts[name] = definition
    if not contrasts:
        raise UsageError("No contrast given: pass CONTRAST arguments or --contrasts-file.")
    return contrasts


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "contrast"


# ------------------------------------------------------------------ commands
def _open_store(path: str):
    from . import open_model

    if "://" not in path and not Path(path).exists():
        raise FileNotFoundError(f"The store {path!r} does not exist.")
    return open_model(path)


def _check_files(paths: Sequence[str], what: str) -> None:
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"The {what} {p!r} does not exist.")


def _cmd_demo(args) -> int:
    from .demo import run_demo

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


def _cmd_fit(args) -> int:
    from . import FirstLevelModel

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
    _persist_model(model, args.client, not args.no_progress)
    with _local_progress(not args.no_progress and args.client is None):
        model.to_zarr(str(out), overwrite=args.overwrite)
    designs = model.design_matrices_
    print(f"Fitted {len(designs)} run(s), {int(model.mask_img_.get_fdata().sum()):,} voxels, "
          f"{designs[0].shape[1]} regressors; store written to {out}")
    print("Design columns: " + ", ".join(str(c) for c in designs[0].columns))
    return 0


def _cmd_contrast(args) -> int:
    from .io.export import unmask

    contrasts = _contrasts_from_args(args)
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
        path = out_dir / f"{_safe_filename(name)}_{OUTPUT_SUFFIX[output_type]}.nii.gz"
        unmask(array, mask, model.mask_img_.affine, f"{output_type} of {name}").to_filename(path)
        print(path)
    return 0


def _cmd_report(args) -> int:
    contrasts = _contrasts_from_args(args)
    model = _open_store(args.store)
    if args.bg_img:
        _check_files([args.bg_img], "background image")
    out = Path(args.output)
    if not out.parent.exists():
        raise FileNotFoundError(f"The folder {str(out.parent)!r} does not exist.")
    height = None if args.height_control == "none" else args.height_control
    with _local_progress(not args.no_progress and args.client is None):
        report = model.generate_report(
            contrasts, title=args.title, bg_img=args.bg_img, threshold=args.threshold,
            alpha=args.alpha, cluster_threshold=args.cluster_threshold, height_control=height,
            two_sided=args.two_sided, glass_brain=args.glass_brain,
        )
    report.save_as_html(out)
    print(out)
    return 0


# ------------------------------------------------------------------- parser
class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's examples as written; shows meaningful defaults only."""

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
    group.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    return parent


def _contrast_arguments(parser: argparse.ArgumentParser, required_hint: str) -> None:
    parser.add_argument(
        "contrast", nargs="*", metavar="CONTRAST",
        help="NAME=DEFINITION or DEFINITION; a definition is an expression over the design "
             "column names ('audio - visual') or a JSON array ('[-1,-1,1,1]' for t, "
             f"'[[1,0],[0,1]]' for F). {required_hint}",
    )
    parser.add_argument("-f", "--contrasts-file", metavar="JSON",
                        help="JSON file mapping contrast names to definitions")


def _add_demo(sub, common) -> None:
    from .demo import DEMO_N_SCANS, DEMO_SHAPE

    p = sub.add_parser(
        "demo", parents=[common], formatter_class=_Formatter,
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
    p.set_defaults(func=_cmd_demo)


def _add_fit(sub, common) -> None:
    p = sub.add_parser(
        "fit", parents=[common], formatter_class=_Formatter,
        help="fit a first-level GLM to one or more runs and write the fit store",
        description="Fit nilearn's first-level GLM to 4D NIfTI runs, streaming each run once, "
                    "and write the fit to a Zarr store. New contrasts are then computed from the "
                    "store with 'daskglm contrast', without refitting.",
        epilog="examples:\n"
               "  daskglm fit run1.nii.gz run2.nii.gz --design d1.npz d2.npz --mask mask.nii.gz "
               "--smoothing-fwhm 5 -o fit.zarr\n"
               "  daskglm fit run1.nii.gz --events events.tsv --t-r 2.5 -o fit.zarr "
               "--scheduler tcp://scheduler:8786",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="4D NIfTI run(s), .nii or .nii.gz")
    p.add_argument("-o", "--output", required=True, metavar="STORE", help="Zarr store to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    design = p.add_argument_group("design (one file per run)")
    design.add_argument("--design", nargs="+", metavar="FILE",
                        help="design matrices: .npz (key X), .npy, .csv or .tsv")
    design.add_argument("--events", nargs="+", metavar="TSV",
                        help="events tables (onset, duration, trial_type); needs --t-r")
    design.add_argument("--confounds", nargs="+", metavar="FILE", help="confounds tables, with --events")
    design.add_argument("--t-r", type=float, metavar="SECONDS", help="repetition time")
    design.add_argument("--hrf-model", default="glover", help="HRF model, with --events")
    design.add_argument("--drift-model", default="cosine", help="drift model, with --events")
    design.add_argument("--high-pass", type=float, default=0.01, metavar="HZ",
                        help="high-pass cut-off of the cosine drifts, with --events")
    model = p.add_argument_group("model")
    model.add_argument("--mask", metavar="NIFTI",
                       help="analysis mask; default: nilearn's EPI mask of the runs; 'none': all voxels")
    model.add_argument("--smoothing-fwhm", type=float, metavar="MM", help="Gaussian smoothing FWHM in mm")
    model.add_argument("--noise-model", choices=("ols", *(f"ar{k}" for k in range(1, 9))), default="ar1",
                       metavar="{ols,ar1,...,ar8}", help="noise model")
    model.add_argument("--whitening", choices=("binned", "exact"), default="binned",
                       help="'binned': nilearn's AR(1) bins; 'exact': per-voxel bias-corrected AR(p) "
                            "(nominal false-positive rates, docs/statistics.md)")
    p.set_defaults(func=_cmd_fit)


def _add_contrast(sub, common) -> None:
    p = sub.add_parser(
        "contrast", parents=[common], formatter_class=_Formatter,
        help="compute contrasts from a fit store and write them to NIfTI",
        description="Compute contrasts from a store written by 'daskglm fit' (no refit) and write "
                    "the maps to NIfTI files named <contrast>_<type>.nii.gz (z maps: "
                    "<contrast>_z_map.nii.gz). With several runs, runs are combined by fixed effects.",
        epilog="examples:\n"
               "  daskglm contrast fit.zarr 'DSt_minus_SSt=[-1,-1,1,1]' -o results\n"
               "  daskglm contrast fit.zarr 'audio - visual' --output-type z_score effect_size\n"
               "  daskglm contrast fit.zarr -f contrasts.json -o results",
    )
    p.add_argument("store", metavar="STORE", help="fit store written by 'daskglm fit'")
    _contrast_arguments(p, "At least one contrast or --contrasts-file is needed.")
    p.add_argument("-t", "--output-type", nargs="+", choices=OUTPUT_TYPES, default=["z_score"],
                   help="maps to write")
    p.add_argument("--stat-type", choices=("t", "F"), default=None,
                   help="force t or F (default: 1-D contrasts are t, 2-D are F)")
    p.add_argument("-o", "--out-dir", default="results", metavar="DIR", help="folder of the NIfTI files")
    p.add_argument("--quiet-warnings", action="store_true",
                   help="hide nilearn-style warnings (zero-padding, one contrast for all runs)")
    p.set_defaults(func=_cmd_contrast)


def _add_report(sub, common) -> None:
    p = sub.add_parser(
        "report", parents=[common], formatter_class=_Formatter,
        help="write the HTML report of a fit store",
        description="Write a single self-contained HTML report of a fit store: model parameters, "
                    "mask, design matrices, whitening diagnostics, and per contrast the contrast "
                    "matrix, the thresholded stat map and the cluster table.",
        epilog="example:\n  daskglm report fit.zarr -f contrasts.json --bg-img mean.nii.gz -o report.html",
    )
    p.add_argument("store", metavar="STORE", help="fit store written by 'daskglm fit'")
    _contrast_arguments(p, "At least one contrast or --contrasts-file is needed.")
    p.add_argument("-o", "--output", default="report.html", metavar="HTML", help="report file")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument("--bg-img", metavar="NIFTI", help="background of the stat maps (e.g. a mean image)")
    p.add_argument("--height-control", choices=("fpr", "fdr", "bonferroni", "none"), default="fpr",
                   help="multiple-comparison control of the height threshold")
    p.add_argument("--alpha", type=float, default=0.001, help="error rate of the height control")
    p.add_argument("--threshold", type=float, default=3.09, help="z threshold with --height-control none")
    p.add_argument("--cluster-threshold", type=int, default=0, metavar="VOXELS",
                   help="minimum cluster size")
    p.add_argument("--two-sided", action="store_true", help="threshold and tabulate negative values too")
    p.add_argument("--glass-brain", action="store_true", help="add a glass-brain view per contrast")
    p.set_defaults(func=_cmd_report)


def _add_plugins(sub) -> None:
    """Subcommands of optional modules (``daskglm.subjects``: ``fit-subjects``)."""
    try:
        module = importlib.import_module("daskglm.subjects")
    except ModuleNotFoundError as err:
        if err.name != "daskglm.subjects":
            raise
        return
    add = getattr(module, "add_subcommand", None)
    if callable(add):
        add(sub)


def build_parser() -> argparse.ArgumentParser:
    """The ``daskglm`` argument parser."""
    from ._version import __version__

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
    common = common_options()
    _add_demo(sub, common)
    _add_fit(sub, common)
    _add_contrast(sub, common)
    _add_report(sub, common)
    _add_plugins(sub)
    return parser


class _WarningPrinter:
    """Shows each distinct warning once, as one ``daskglm: warning: ...`` line."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text not in self.seen:
            self.seen.add(text)
            print(f"{PROG}: warning: {text}", file=sys.stderr)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, FileNotFoundError) and err.filename and not text.startswith("The"):
        text = f"No such file: {err.filename!r}"
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``daskglm`` command line; return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for usage errors (with a one-line message on stderr).
    """
    import matplotlib

    matplotlib.use("Agg")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, argparse's own usage errors
        return int(exit_.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        with warnings.catch_warnings(), _scheduler(getattr(args, "scheduler", None)) as client:
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = _WarningPrinter()
            args.client = client
            return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if args.traceback:
            raise
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
