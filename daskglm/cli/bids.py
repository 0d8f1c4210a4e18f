"""``daskglm bids``: a BIDS + fMRIPrep dataset (local or on object storage) into one study store.

::

    daskglm bids DATASET -o STORE --task TASK [--space SPACE] [--sub LABEL ...]
        [--derivatives FOLDER] [--confounds-strategy NAME ...] [--confounds-option KEY=VALUE ...]
        [--smoothing-fwhm MM] [--noise-model M] [--hrf-model M] [--mask {epi,derivatives,per-subject}]
        [--contrast NAME=EXPR ...] [--bids-out DIR] [--scheduler ADDR]
        [--storage-option KEY=VALUE ...] [--resume | --overwrite] [--no-progress]

Prints the per-subject status table (also stored in the store's root; a
failed subject's error is printed once, on stderr) and exits with 1 if any
subject failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from daskglm.cli.runtime import PROG, ErrorPolicy, cli_words, command, subject_failure
from daskglm.cli.values import add_confounds_strategy, confounds_strategy, parse_contrast, parse_key_values

__all__ = ["add_bids", "cmd_bids", "parse_key_values"]

BIDS_ERRORS = ErrorPolicy(prefix=f"{PROG} bids", status=1, errors=(Exception,), describe=subject_failure)


def add_bids(sub, parents: Sequence[argparse.ArgumentParser], formatter) -> argparse.ArgumentParser:
    """Add ``bids`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "bids", parents=list(parents), formatter_class=formatter,
        help="fit a BIDS + fMRIPrep study (local or on object storage) into one store",
        description=(
            "Query a BIDS dataset with fMRIPrep derivatives as nilearn's first_level_from_bids does "
            "(keeping load_confounds' sample masks), fit all subjects' runs in one dask graph and "
            "write one study store with a group per subject (daskglm.open_subject(STORE, '01')). "
            "DATASET and STORE may be fsspec URLs (s3://...). A failed subject does not stop the "
            "others; the status table is printed and stored."
        ),
        epilog="examples:\n"
               "  daskglm bids ds001 -o study.zarr --task faces --contrast 'face-house'\n"
               "  daskglm bids s3://bucket/ds -o s3://bucket/study.zarr --task faces --resume \\\n"
               "      --scheduler tcp://scheduler:8786 --confounds-strategy motion wm_csf scrub \\\n"
               "      --storage-option endpoint_url=http://minio:9000 --storage-option anon=false\n"
               "  daskglm bids ds -o study.zarr --task faces --space fsLR --contrast 'face-house' \\\n"
               "      --bids-out ds/derivatives/daskglm    # fMRIPrep's *_space-fsLR_den-91k_bold.dtseries.nii",
    )
    p.add_argument("dataset", metavar="DATASET", help="BIDS root: directory or fsspec URL")
    p.add_argument("-o", "--out", dest="store", required=True, metavar="STORE",
                   help="study store: directory or fsspec URL")
    p.add_argument("--task", required=True, metavar="TASK", help="task label")
    p.add_argument("--space", default=None, metavar="SPACE",
                   help="space label (nilearn's default: MNI152NLin2009cAsym; fsaverage5: GIfTI "
                        "hemispheres; fsLR: CIFTI-2 .dtseries.nii runs, maps written as .dscalar.nii)")
    p.add_argument("--sub", nargs="+", default=None, metavar="LABEL", help="subjects to fit (default: all)")
    p.add_argument("--exclude-sub", nargs="+", default=None, metavar="LABEL", help="subjects to skip")
    p.add_argument("--derivatives", default="derivatives", metavar="FOLDER",
                   help="fMRIPrep derivatives folder, relative to DATASET; when it holds no sub-* folder, the "
                        "one folder in it that does is used (e.g. derivatives/fmriprep)")
    add_confounds_strategy(p, "Default: every column of the confounds tables (first-row n/a set to 0), as "
                              "nilearn's first_level_from_bids.")
    p.add_argument("--mask", choices=("epi", "derivatives", "per-subject"), default="epi",
                   help="the mask: 'epi', nilearn's EPI mask of each subject's runs (first_level_from_bids' "
                        "default too, nilearn's and daskglm's); 'derivatives', fMRIPrep's brain masks as "
                        "first_level_from_bids(mask_img='derivatives') (the first subject's desc-brain_mask "
                        "intersection for all); 'per-subject', each subject's own brain masks. "
                        "statmap.json (--bids-out) records the mask used")
    p.add_argument("--smoothing-fwhm", type=float, default=None, metavar="MM")
    p.add_argument("--noise-model", default="ar1", metavar="M", help="ols or ar1..ar8")
    p.add_argument("--hrf-model", default="glover", metavar="M", help="nilearn's hrf_model")
    p.add_argument("--contrast", action="append", default=None, metavar="NAME=EXPR",
                   help="contrast (repeatable): NAME=EXPR or EXPR over the design's columns")
    p.add_argument("--bids-out", default=None, metavar="DIR",
                   help="also write BIDS derivatives (statmaps, designs, mask) there")
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE",
                   help="fsspec option for DATASET and STORE (repeatable; JSON values parsed)")
    p.add_argument("--convert-to-zarr", nargs="?", const=True, default=None, metavar="DIR",
                   help="fit from NIfTI-Zarr copies of the runs, converted once to DIR/sub-<id>/<run>.nii.zarr "
                        "(default DIR: <STORE's parent>/derivatives/daskglm-zarr) and reused by refits while "
                        "the runs are unchanged (docs/nifti_zarr.md)")
    p.add_argument("--beta-series", choices=("lss", "lsa", "lss1"), default=None, metavar="METHOD",
                   help="fit each subject's runs as a beta series instead (lss, lsa or lss1; daskglm betas): "
                        "one store per subject, STORE/sub-<id>_betaseries.zarr, and NiBetaSeries-named maps "
                        "in --bids-out DIR (default STORE)/sub-<id>/func")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="keep runs already complete in the store (same inputs and parameters)")
    mode.add_argument("--overwrite", action="store_true", help="replace existing subject stores")
    p.set_defaults(func=cmd_bids)
    return p


@command(BIDS_ERRORS, keep_active_client=True)
def cmd_bids(args) -> int:
    """``daskglm bids``: exit status 1 if any subject failed."""
    from daskglm.studies.bids.study import fit_bids

    if args.beta_series:
        from daskglm.cli.betas import bids_beta_series

        return bids_beta_series(args, *confounds_strategy(args))
    contrasts = dict(parse_contrast(c) for c in args.contrast or [])
    if args.bids_out and not contrasts:
        raise ValueError("--bids-out needs at least one --contrast.")
    strategy, options = confounds_strategy(args)
    result = fit_bids(
        args.dataset, args.store, args.task, contrasts=contrasts or None, space_label=args.space,
        sub_labels=args.sub, exclude_subjects=args.exclude_sub, derivatives_folder=args.derivatives,
        confounds_strategy=strategy, confounds_kwargs=options,
        storage_options=parse_key_values(args.storage_option, "--storage-option") or None,
        resume=args.resume, overwrite=args.overwrite, bids_out=args.bids_out,
        mask_img=None if args.mask == "epi" else args.mask,
        progress=not args.no_progress, smoothing_fwhm=args.smoothing_fwhm,
        noise_model=args.noise_model, hrf_model=args.hrf_model,
        convert_to_zarr=args.convert_to_zarr,
    )
    print(result.table(errors=False))  # each error once, on stderr
    for sid, message in result.failed.items():
        print(f"{BIDS_ERRORS.prefix}: error: sub-{sid}: {cli_words(message)}", file=sys.stderr)
    return 0 if result.ok else 1
