"""Which codec for NIfTI-Zarr runs: read time of blosc-lz4, blosc-zstd-1 and gzip-1 on a generated run.

Converts one run (the first of ``bench_seed.py``'s dataset of ``--size``,
generated if missing) with :func:`daskglm.to_nifti_zarr` and each codec, whole
volumes x the default scans per chunk, then times a full streamed read
(``iter_range`` in pieces of 2 scans, as a fit reads: every stored chunk decoded
once), best of ``--repeats``, in this process (the store files are in the page
cache: this is decode time, not disk time).  For reference it also times
ISA-L's decompression of the ``.nii.gz`` and, with ``nifti-zarr`` installed,
a store written by ``niizarr.nii2zarr`` with its defaults (blosc-zstd-5, 64^3 x
1-scan chunks; one pyramid level).  CPU seconds are printed beside wall times
(the box is shared: the CPU time is the load-proof figure).

Usage::

    python benchmarks/bench_zarr_codecs.py                 # seed size, 64x76x64x300 (373 MB raw)
    python benchmarks/bench_zarr_codecs.py --size tiny --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _read_all(store: Path) -> None:
    from daskglm.io.nifti_zarr import NiftiZarrRunSource

    source = NiftiZarrRunSource(store)
    for _ in source.iter_range(0, source.n_scans, 2):
        pass


def _read_gzip(path: str) -> None:
    from isal import igzip

    with igzip.open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="seed", help="a size of bench_seed.py (default: seed)")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from bench_seed import ensure_dataset

    from daskglm.io.nifti_zarr_write import CODECS, default_time_chunk, to_nifti_zarr

    run = json.loads((ensure_dataset(args.size, args.data_dir) / "dataset.json").read_text())["func1"]
    import nibabel as nib

    img = nib.load(run)
    raw = img.dataobj.dtype.itemsize * int(__import__("numpy").prod(img.shape))
    print(f"run {run}: {img.shape}, {raw / 1e6:.0f} MB raw, {os.path.getsize(run) / 1e6:.0f} MB .nii.gz; "
          f"{default_time_chunk(img.shape[:3], img.get_data_dtype())} scans per chunk; "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []
    gz = min(_timed(lambda: _read_gzip(run)) for _ in range(args.repeats))
    rows.append(("nii.gz (ISA-L)", os.path.getsize(run), None, gz))
    work = Path(tempfile.mkdtemp(prefix="zarr-codecs-"))
    try:
        for codec in CODECS:
            store = work / f"{codec}.nii.zarr"
            write = _timed(lambda store=store, codec=codec: to_nifti_zarr(run, store, codec=codec))
            read = min(_timed(lambda store=store: _read_all(store)) for _ in range(args.repeats))
            rows.append((codec, _size(store), write, read))
        try:
            import niizarr
        except ImportError:
            niizarr = None
        if niizarr is not None:
            store = work / "nii2zarr.nii.zarr"
            write = _timed(lambda: niizarr.nii2zarr(run, str(store), nb_levels=1))
            read = min(_timed(lambda: _read_all(store)) for _ in range(args.repeats))
            rows.append(("nii2zarr defaults", _size(store), write, read))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| format | size | write (wall / CPU) | full read (wall / CPU) |\n|---|---|---|---|")
    for name, size, write, read in rows:
        w = "-" if write is None else f"{write[0]:.2f} s / {write[1]:.2f} s"
        print(f"| {name} | {size / 1e6:.0f} MB ({size / raw:.0%}) | {w} | {read[0]:.2f} s / {read[1]:.2f} s |")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
