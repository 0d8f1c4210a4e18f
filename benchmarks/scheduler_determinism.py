"""Are fits bit-identical across dask schedulers?  Measures it on generated FIAC-like data.

Fits the same two runs (``smoothing_fwhm=5``, AR(1), FIAC design) under each
scheduler and compares the betas, dispersions and two z maps with the
synchronous scheduler's, bit for bit.  Prints one line per scheduler.

    python benchmarks/scheduler_determinism.py [--shape 40 48 40] [--scans 150] [--voxel-chunk 4000]

The result is recorded in docs/distributed.md ("Determinism").
"""

from __future__ import annotations

import argparse
import tempfile
import warnings

import dask
import numpy as np

from daskglm import FirstLevelModel
from daskglm.data.fiac import make_fiac_like

CONTRASTS = ("`DSt-DSp` + `DSt-SSp` - `SSt-SSp` - `SSt-DSp`", "FirstSt")


def load_designs(data):
    import pandas as pd

    out = []
    for key in ("design_matrix1", "design_matrix2"):
        with np.load(data[key]) as npz:
            out.append(pd.DataFrame(npz["X"], columns=[str(c) for c in npz["columns"]]))
    return out


def fit_outputs(data, designs, chunk):
    model = FirstLevelModel(mask_img=data["mask"], smoothing_fwhm=5.0, chunks={"voxel": chunk, "time": 32})
    model.fit([data["func1"], data["func2"]], design_matrices=designs)
    ds = model.results_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        maps = [model.contrast_maps(c)["z_score"].data for c in CONTRASTS]
    return [np.asarray(a) for a in dask.compute(ds.beta.data, ds.dispersion.data, *maps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[40, 48, 40])
    parser.add_argument("--scans", type=int, default=150)
    parser.add_argument("--voxel-chunk", type=int, default=4000)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="daskglm-determinism-")
    data = make_fiac_like(folder, shape=tuple(args.shape), n_scans=args.scans, seed=0)
    designs = load_designs(data)
    names = ("beta", "dispersion", *(f"z[{c[:12]}]" for c in CONTRASTS))
    with dask.config.set(scheduler="synchronous"):
        reference = fit_outputs(data, designs, args.voxel_chunk)
    print(f"{args.shape} x {args.scans} scans x 2 runs, {reference[1].shape[-1]} voxels, "
          f"voxel chunks of {args.voxel_chunk}; reference: synchronous")

    def report(label, outputs):
        diffs = [float(np.max(np.abs(a - b))) for a, b in zip(outputs, reference)]
        same = all(np.array_equal(a, b) for a, b in zip(outputs, reference))
        detail = ", ".join(f"{n} {d:.2g}" for n, d in zip(names, diffs))
        print(f"{label:<34} {'bit-identical' if same else 'DIFFERENT'}  (max |diff|: {detail})")

    with dask.config.set(scheduler="synchronous"):
        report("synchronous (again)", fit_outputs(data, designs, args.voxel_chunk))
    for workers in (1, 2):
        with dask.config.set(scheduler="threads", num_workers=workers):
            report(f"threads, {workers} worker(s)", fit_outputs(data, designs, args.voxel_chunk))
    with dask.config.set(scheduler="processes", num_workers=2):
        report("processes, 2 workers", fit_outputs(data, designs, args.voxel_chunk))
    from distributed import Client, LocalCluster

    for n_workers, threads in ((2, 1), (1, 2)):
        with LocalCluster(n_workers=n_workers, threads_per_worker=threads, dashboard_address=None,
                          processes=True) as cluster, Client(cluster):
            report(f"distributed, {n_workers} x {threads} thread(s)", fit_outputs(data, designs, args.voxel_chunk))


if __name__ == "__main__":
    main()
