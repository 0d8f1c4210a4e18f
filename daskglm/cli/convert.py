"""``daskglm convert``: NIfTI runs to NIfTI-Zarr stores (``DIR/<run name>.nii.zarr``), once, for fast refits."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from daskglm.cli.runtime import command
from daskglm.errors import UsageError

__all__ = ["add_convert", "cmd_convert"]


def add_convert(sub, parents: list, formatter_class) -> argparse.ArgumentParser:
    """Add ``convert`` to the subparsers ``sub``."""
    from daskglm.io.nifti_zarr_write import CODECS, DEFAULT_CODEC

    p = sub.add_parser(
        "convert", parents=parents, formatter_class=formatter_class,
        help="convert .nii/.nii.gz runs to NIfTI-Zarr (fast, chunk-parallel refits)",
        description=(
            "Write each run as DIR/<run name>.nii.zarr: the NIfTI-Zarr layout (OME-Zarr + the NIfTI "
            "header; niizarr.zarr2nii reads it back), whole volumes x a few scans per chunk, blosc-lz4. "
            "One pass over each input, several runs at once; inputs are never modified; a failed "
            "conversion leaves nothing at the target name.  Fits, studies and open_run read the stores "
            "like the runs (docs/nifti_zarr.md)."
        ),
        epilog="examples:\n"
               "  daskglm convert sub-01/func/*_bold.nii.gz -o zarr/sub-01\n"
               "  daskglm convert s3://bucket/sub-01_bold.nii.gz -o zarr --time-chunk 8",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help=".nii / .nii.gz runs (paths or fsspec URLs)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--codec", choices=CODECS, default=DEFAULT_CODEC,
                   help="chunk compression (blosc-lz4 reads fastest; docs/nifti_zarr.md)")
    p.add_argument("--time-chunk", type=int, metavar="SCANS", default=None,
                   help="scans per stored chunk (default: about 16 MiB of whole volumes)")
    p.add_argument("--workers", type=int, metavar="N", default=None,
                   help="runs converted at once (default: the CPU count)")
    p.add_argument("--overwrite", action="store_true", help="replace existing stores")
    p.set_defaults(func=cmd_convert)
    return p


@command()
def cmd_convert(args) -> int:
    """``daskglm convert``: runs to ``DIR/<run name>.nii.zarr``."""
    from daskglm.io.nifti_zarr_write import convert_runs, zarr_run_name

    if args.time_chunk is not None and args.time_chunk < 1:
        raise UsageError(f"--time-chunk must be ≥ 1, got {args.time_chunk}.")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be ≥ 1, got {args.workers}.")
    out = Path(args.output)
    for run in args.runs:
        if "://" not in run and not Path(run).exists():
            raise FileNotFoundError(f"The run {run!r} does not exist.")
        if not args.overwrite and (out / zarr_run_name(run)).exists():
            raise UsageError(f"{str(out / zarr_run_name(run))!r} exists; pass --overwrite to replace it.")
    start = time.perf_counter()
    stores = convert_runs(args.runs, out, workers=args.workers, overwrite=args.overwrite,
                          time_chunk=args.time_chunk, codec=args.codec)
    for run, store in zip(args.runs, stores):
        print(f"{run} -> {store}", file=sys.stdout)
    print(f"{len(stores)} run(s) converted in {time.perf_counter() - start:.1f} s", file=sys.stdout)
    return 0
