"""Within-run scaling: one long .nii.gz run on a LocalCluster of 1 vs 2 single-threaded workers.

Fits ONE run (the first of a FIAC-like dataset, default 64x76x64x1200 — the
``long`` size of ``bench_seed.py``, generated if missing) with smoothing 5 mm,
AR(1) and one contrast, on ``LocalCluster(n_workers=1)`` and ``(n_workers=2)``,
one thread per worker, alternated, best of ``--repeats``.  With ``rapidgzip``
installed the run is split at a gzip seek index (built once by the first fit
and cached in ``DASKGLM_GZIP_INDEX_DIR``; its cold build time is printed
separately); without it, it is one streaming task.  Cluster start-up is not
timed.

Usage::

    python benchmarks/within_run_scaling.py                     # ~3 min on 2 cores
    python benchmarks/within_run_scaling.py --size seed --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
# children (engines, dask workers) import the daskglm of this checkout, installed or not
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def _fit_once(func, mask, design) -> float:
    import numpy as np

    from daskglm import FirstLevelModel

    start = time.perf_counter()
    model = FirstLevelModel(mask_img=mask, smoothing_fwhm=5, minimize_memory=True)
    model.fit(func, design_matrices=[design])
    z = model.compute_contrast(np.eye(design.shape[1])[0], output_type="z_score")
    assert np.isfinite(np.asarray(z.dataobj)).all()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="long", help="a size of bench_seed.py (default: long)")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import numpy as np
    import pandas as pd
    from bench_seed import ensure_dataset
    from distributed import Client, LocalCluster

    from daskglm.io import gzindex

    dataset = ensure_dataset(args.size, args.data_dir)
    data = json.loads((dataset / "dataset.json").read_text())
    func, mask = data["func1"], data["mask"]
    design = pd.DataFrame(np.load(data["design_matrix1"])["X"])
    os.environ.setdefault("DASKGLM_GZIP_INDEX_DIR", tempfile.mkdtemp(prefix="daskglm-gzidx-"))
    print(f"run {func} ({os.path.getsize(func) / 1e9:.2f} GB), {design.shape[1]} regressors; "
          f"rapidgzip: {gzindex.available()}; cpu count {os.cpu_count()}")
    clusters = {n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
                for n in (1, 2)}
    try:
        times = {1: [], 2: []}
        with Client(clusters[2]):
            cold = _fit_once(func, mask, design)  # builds (and caches) the seek index
        print(f"2 workers, cold (index built): {cold:.2f} s")
        for rep in range(args.repeats):
            for n in ((1, 2) if rep % 2 == 0 else (2, 1)):
                with Client(clusters[n]):
                    times[n].append(_fit_once(func, mask, design))
                print(f"{n} worker(s): {times[n][-1]:.2f} s", flush=True)
    finally:
        for cluster in clusters.values():
            cluster.close()
    one, two = min(times[1]), min(times[2])
    print(f"best of {args.repeats}: 1 worker {one:.2f} s, 2 workers {two:.2f} s, speed-up {one / two:.2f}x "
          f"(load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
