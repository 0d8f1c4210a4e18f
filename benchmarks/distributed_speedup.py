"""Speedup of a 2-run fit from 1 to 2 dask.distributed worker processes.

Generates a FIAC-like 2-run dataset (``--shape``, ``--scans``; ``.nii.gz`` by
default, ``--uncompressed`` for ``.nii``), then fits it on a
``LocalCluster(n_workers=1)`` and a ``LocalCluster(n_workers=2)`` (one thread
per worker, processes), ``--repeats`` times each, and prints the best times
and their ratio.  The timed work is the fit plus one contrast (``fit`` is
lazy, so that is the whole streaming pass and the voxel solves); cluster
start-up is not timed, and the graph is warmed once per cluster.

Usage::

    python benchmarks/distributed_speedup.py --shape 48 56 48 --scans 300
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings


def _fit_once(data) -> float:
    import numpy as np

    from daskglm import FirstLevelModel

    start = time.perf_counter()
    model = FirstLevelModel(mask_img=data["mask"]).fit(
        [data["func1"], data["func2"]], design_matrices=[data["design_matrix1"], data["design_matrix2"]]
    )
    z = model.compute_contrast([1, 0, 0, 0])
    assert np.isfinite(np.asarray(z.dataobj)).all()
    return time.perf_counter() - start


def _time_cluster(data, n_workers: int, repeats: int) -> float:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        return min(_fit_once(data) for _ in range(repeats))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 56, 48))
    parser.add_argument("--scans", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--uncompressed", action="store_true", help=".nii runs instead of .nii.gz")
    parser.add_argument("--data-dir", default=None, help="reuse/generate the dataset here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from daskglm.data.fiac import make_fiac_like

    out = args.data_dir or tempfile.mkdtemp(prefix="daskglm-speedup-")
    ext = ".nii" if args.uncompressed else ".nii.gz"
    t0 = time.perf_counter()
    data = make_fiac_like(out, shape=tuple(args.shape), n_scans=args.scans, seed=0,
                          compress=not args.uncompressed)
    size = sum(os.path.getsize(data[f"func{i}"]) for i in (1, 2)) / 1e6
    print(f"dataset: 2 runs of {tuple(args.shape)} x {args.scans} scans ({ext}, {size:.0f} MB on disk), "
          f"generated in {time.perf_counter() - t0:.1f} s")
    print(f"cpu count: {os.cpu_count()}, load average before: {os.getloadavg()}")
    one = _time_cluster(data, 1, args.repeats)
    print(f"1 worker process : {one:.2f} s (best of {args.repeats})")
    two = _time_cluster(data, 2, args.repeats)
    print(f"2 worker processes: {two:.2f} s (best of {args.repeats})")
    print(f"speedup 1 -> 2 workers: {one / two:.2f}x   (load average after: {os.getloadavg()})")


if __name__ == "__main__":
    main()
