"""What the command line's values mean: option strings turned into Python objects.

:mod:`daskglm.cli.parser` declares what the command line accepts (argparse:
options, choices, help); this module reads what was given: contrasts
(``NAME=DEFINITION`` arguments and JSON files), ``KEY=VALUE`` options,
``daskglm fit``'s options as ``FirstLevelModel`` parameters
(:func:`fit_model_params`, :data:`SIGNAL_SCALINGS`) and ``--target-affine``.
Confounds files are read by the Python API's reader
(:func:`daskglm.glm.confounds.read_confounds`), the same for both; the
``load_confounds`` options of ``daskglm fit``, ``daskglm betas`` and ``daskglm bids``
(``--confounds-strategy``, ``--confounds-option``, ``--confounds-columns``) are declared
and read here, once for all (:func:`add_confounds_strategy`, :func:`add_confounds_columns`,
:func:`confounds_strategy`, :func:`confounds_tables`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daskglm.errors import UsageError

__all__ = ["parse_contrast", "parse_key_values", "load_contrast_file", "contrasts_from_args", "safe_filename",
           "fit_model_params", "SIGNAL_SCALINGS", "add_confounds_strategy", "confounds_strategy",
           "add_confounds_columns", "confounds_tables"]

_NAMED = re.compile(r"^\s*([A-Za-z_][\w.+-]*)\s*=(?!=)\s*(.+)$", re.S)


def parse_key_values(items: Sequence[str] | None, option: str) -> dict:
    """``KEY=VALUE`` strings as a dict; values parsed as JSON when they parse (``anon=false`` → False).

    The one parser of ``--storage-option`` / ``--confounds-option`` values
    (``daskglm bids``, ``daskglm fit-subjects``).
    """
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {item!r}.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def add_confounds_strategy(group, default_help: str) -> None:
    """``--confounds-strategy NAME ...`` and ``--confounds-option KEY=VALUE`` (``daskglm fit``, ``daskglm bids``).

    Parameters
    ----------
    group : argparse parser or argument group
    default_help : str
        What happens without ``--confounds-strategy``.
    """
    group.add_argument(
        "--confounds-strategy", nargs="+", default=None, metavar="NAME",
        help="nilearn's load_confounds strategy for fMRIPrep's confounds tables: motion, high_pass, wm_csf, "
             "global_signal, compcor, ica_aroma, scrub, non_steady_state (e.g. motion wm_csf scrub); its "
             "sample mask (scrubbed and non-steady-state scans) is applied. " + default_help)
    group.add_argument(
        "--confounds-option", action="append", metavar="KEY=VALUE",
        help="load_confounds option (repeatable, with --confounds-strategy): motion=full, wm_csf=basic, "
             "global_signal=basic, scrub=5, fd_threshold=0.5, std_dvars_threshold=1.5, "
             "compcor=anat_combined, n_compcor=all, ica_aroma=full, demean=true")


def add_confounds_columns(group) -> None:
    """``--confounds-columns NAME...`` (``daskglm fit``, ``daskglm betas``)."""
    group.add_argument("--confounds-columns", nargs="+", metavar="NAME",
                       help="keep these confounds columns (names or wildcards, e.g. trans_* rot_* "
                            "framewise_displacement), of the table or of what --confounds-strategy chose; "
                            "a first-row n/a is set to the second row's value, as load_confounds does")


def confounds_strategy(args) -> tuple[tuple[str, ...] | None, dict]:
    """``--confounds-strategy`` and ``--confounds-option`` as ``(strategy, load_confounds options)``.

    Raises
    ------
    UsageError
        Options without a strategy, or an option ``load_confounds`` does not have.
    """
    from daskglm.glm.confounds import load_confounds_options

    strategy = tuple(args.confounds_strategy) if getattr(args, "confounds_strategy", None) else None
    options = parse_key_values(getattr(args, "confounds_option", None), "--confounds-option")
    if options and strategy is None:
        raise UsageError("--confounds-option goes with --confounds-strategy (load_confounds' options).")
    unknown = sorted(set(options) - set(load_confounds_options()))
    if unknown:
        raise UsageError(f"--confounds-option: load_confounds has no option {', '.join(unknown)}; its options: "
                         f"{', '.join(load_confounds_options())}.")
    return strategy, options


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
    """A JSON contrast as a 1-D or 2-D float array (strings are expressions, kept)."""
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

    Parameters
    ----------
    text : str
        One ``CONTRAST`` argument.

    Returns
    -------
    name : str
    definition : str or ndarray
        An expression, or a 1-D (t) or 2-D (F) float array.

    Raises
    ------
    daskglm.errors.UsageError
        For an empty contrast or an invalid array.
    """
    match = _NAMED.match(text)
    if match:
        name, definition = match.group(1), match.group(2)
    else:
        name, definition = text.strip(), text
    if not definition.strip():
        raise UsageError(f"Empty contrast in {text!r}.")
    return name, _parse_value(definition)


def load_contrast_file(path: str) -> dict[str, Any]:
    """The contrasts of a JSON file mapping names to definitions (``--contrasts-file``)."""
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


def contrasts_from_args(args) -> dict[str, Any]:
    """The contrasts of a command: ``--contrasts-file`` first, then ``CONTRAST`` arguments."""
    contrasts: dict[str, Any] = {}
    if getattr(args, "contrasts_file", None):
        contrasts.update(load_contrast_file(args.contrasts_file))
    for text in getattr(args, "contrast", None) or []:
        name, definition = parse_contrast(text)
        contrasts[name] = definition
    if not contrasts:
        raise UsageError("No contrast given: pass CONTRAST arguments or --contrasts-file.")
    return contrasts


def safe_filename(name: str) -> str:
    """A contrast name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "contrast"


#: ``--signal-scaling`` values and the ``signal_scaling`` each gives.
SIGNAL_SCALINGS = {"0": 0, "1": 1, "0,1": (0, 1), "none": False}


def fit_model_params(args) -> dict[str, Any]:
    """``FirstLevelModel`` parameters from ``daskglm fit``'s options (see ``parser.FIT_OPTIONS``)."""
    scaling = SIGNAL_SCALINGS[args.signal_scaling]
    chunks = {"time": args.chunks[0], "voxel": args.chunks[1]} if args.chunks else "auto"
    mask = False if args.mask == "none" else args.mask
    return {
        "t_r": args.t_r, "slice_time_ref": args.slice_time_ref, "hrf_model": args.hrf_model,
        "drift_model": None if args.drift_model == "none" else args.drift_model,
        "high_pass": args.high_pass, "drift_order": args.drift_order,
        "fir_delays": list(args.fir_delays) if args.fir_delays else None, "min_onset": args.min_onset,
        "mask_img": mask, "smoothing_fwhm": args.smoothing_fwhm, "signal_scaling": scaling,
        "noise_model": args.noise_model, "minimize_memory": not args.keep_residuals,
        "subject_label": args.subject_label, "whitening": args.whitening, "chunks": chunks,
        "diagnostic_lags": args.diagnostic_lags, **_target_grid(args.target_affine, args.target_shape),
    }


def _target_grid(text: str | None, shape) -> dict[str, Any]:
    """``target_affine``/``target_shape`` from ``--target-affine`` (mm, NIfTI or JSON) and ``--target-shape``."""
    import numpy as np

    shape = tuple(shape) if shape else None
    if text is None:
        return {"target_affine": None, "target_shape": shape}
    try:
        size = float(text)
    except ValueError:
        size = None
    if size is not None:
        if not size > 0:
            raise UsageError(f"--target-affine: a voxel size must be positive, got {text!r}.")
        return {"target_affine": np.diag([size] * 3), "target_shape": shape}
    if text.lstrip().startswith("["):
        try:
            affine = np.asarray(json.loads(text), dtype=float)
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise UsageError(f"--target-affine {text!r} is not a JSON matrix of numbers.") from err
        if affine.shape not in ((3, 3), (4, 4)):
            raise UsageError(f"--target-affine must be 3x3 or 4x4, got shape {affine.shape}.")
        return {"target_affine": affine, "target_shape": shape}
    if not Path(text).is_file():
        raise FileNotFoundError(f"--target-affine {text!r} is neither a voxel size, a JSON matrix nor a file.")
    import nibabel as nib

    img = nib.load(text)
    return {"target_affine": np.asarray(img.affine), "target_shape": shape or tuple(img.shape[:3])}


def confounds_tables(args, runs: list) -> list | None:
    """``--confounds`` files, read as the Python API reads them (``daskglm.glm.confounds.read_confounds``).

    For ``daskglm fit`` and ``daskglm betas`` (their ``--confounds``,
    ``--confounds-strategy``/``--confounds-option`` and ``--confounds-columns``).

    With ``--confounds-strategy`` each table goes through nilearn's
    ``load_confounds`` (found next to its run when no ``--confounds`` is
    given), its sample mask on the table (``attrs["sample_mask"]``), as
    ``daskglm bids`` hands them to ``fit``.
    """
    from daskglm.glm.confounds import fmriprep_confounds_file, read_confounds

    strategy, options = confounds_strategy(args)
    columns = list(args.confounds_columns) if getattr(args, "confounds_columns", None) else None
    chosen = strategy is not None or columns is not None
    if (args.confounds or chosen) and not args.events:
        raise UsageError("--confounds, --confounds-strategy and --confounds-columns go with --events (a given "
                         "--design already holds its confounds).")
    files = list(args.confounds) if args.confounds else None
    if files is None and strategy is not None:
        gifti = getattr(args, "left_run", None) or getattr(args, "right_run", None)
        local = [r for r in (gifti or runs) if isinstance(r, str) and "://" not in r]
        if len(local) != len(runs):
            raise UsageError("Give the confounds tables with --confounds (one per run): they are found next to "
                             "the runs only for local fMRIPrep files.")
        files = [fmriprep_confounds_file(run) for run in local]
    if files is None:
        if columns is not None:
            raise UsageError("--confounds-columns picks columns of the --confounds tables; give them "
                             "(one per run).")
        return None
    if not chosen:
        return files  # read by the model, as from Python (TSV/CSV, rp_*.txt, .par, .1D)
    return [read_confounds(f, strategy=strategy, columns=columns, **options) for f in files]
