"""Group-level permutation benchmark: daskglm on 2 workers vs nilearn ``n_jobs=2``.

Generates ``--subjects`` smooth effect maps (default 100) on an MNI-like 2 mm
grid (91 × 109 × 91) with an ellipsoidal brain mask, then runs a one-sample
``non_parametric_inference`` with ``--n-perm`` sign flips (default 10,000):

* nilearn 0.14.1, ``n_jobs=2`` (joblib worker processes);
* daskglm on a ``LocalCluster`` of 2 single-threaded worker processes.

Each runs in its own child process; wall time (imports and cluster start-up
excluded, the workers' first-task imports included; daskglm's second call on
warm workers is printed too) and peak RSS (the child plus
all its descendants: joblib workers, dask nanny/worker processes, sampled
every 50 ms with psutil) are printed in one table with the ratios, and the
two −log10 FWE p maps are compared (same ``random_state`` and ``n_jobs``, so
daskglm draws nilearn's sign flips: the maps should be equal).

Smaller runs::

    python benchmarks/bench_group.py --small            # 40x48x40, 30 subjects, 1000 flips
    python benchmarks/bench_group.py --shape 60 72 60 --subjects 50 --n-perm 2000
    python benchmarks/bench_group.py --only daskglm     # skip nilearn
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNI_SHAPE = (91, 109, 91)
MNI_AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])


def brain_mask(shape) -> np.ndarray:
    """An ellipsoid filling the grid like an MNI brain mask (~230k voxels at 2 mm)."""
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    centre = [s / 2 for s in shape]
    radii = [0.39 * shape[0], 0.42 * shape[1], 0.37 * shape[2]]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def generate(out: Path, shape, n_subjects: int, seed: int = 0) -> dict:
    """Effect maps (float32 .nii.gz), the mask and a one-column design."""
    import nibabel as nib
    import pandas as pd
    from scipy.ndimage import gaussian_filter

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mask = brain_mask(shape)
    signal = np.zeros(shape, np.float32)
    c = [s // 2 for s in shape]
    signal[c[0] - 4:c[0] + 4, c[1] - 4:c[1] + 4, c[2] - 4:c[2] + 4] = 0.5
    paths = []
    for i in range(n_subjects):
        data = (gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.5) * 3 + signal) * mask
        paths.append(str(out / f"sub-{i:03d}_effect.nii.gz"))
        nib.Nifti1Image(data.astype(np.float32), MNI_AFFINE).to_filename(paths[-1])
    mask_path = str(out / "mask.nii.gz")
    nib.Nifti1Image(mask.astype(np.uint8), MNI_AFFINE).to_filename(mask_path)
    design = str(out / "design.tsv")
    pd.DataFrame({"intercept": np.ones(n_subjects)}).to_csv(design, sep="\t", index=False)
    return {"maps": paths, "mask": mask_path, "design": design, "n_voxels": int(mask.sum())}


# ------------------------------------------------------------------ child
def _child(tool: str, data: dict, n_perm: int, out: str) -> None:
    import warnings

    import pandas as pd

    warnings.simplefilter("ignore")
    design = pd.read_csv(data["design"], sep="\t")
    kwargs = dict(design_matrix=design, mask=data["mask"], n_perm=n_perm, random_state=0, n_jobs=2)
    from nilearn.glm.second_level import non_parametric_inference  # imports are not timed

    if tool == "nilearn":
        t0 = time.perf_counter()
        img = non_parametric_inference(data["maps"], **kwargs)
    else:
        from distributed import Client, LocalCluster

        import daskglm.group  # noqa: F401

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster):
            t0 = time.perf_counter()  # the cluster start-up is not the computation
            img = daskglm.non_parametric_inference(data["maps"], **kwargs)
            wall = time.perf_counter() - t0  # includes the workers' imports on their first tasks
            t1 = time.perf_counter()
            daskglm.non_parametric_inference(data["maps"], **kwargs)
            warm = time.perf_counter() - t1
        img.to_filename(out)
        print(json.dumps({"wall": wall, "warm": warm}))
        return
    wall = time.perf_counter() - t0
    img.to_filename(out)
    print(json.dumps({"wall": wall}))


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_tool(tool: str, data_json: str, n_perm: int, out: str) -> dict:
    """Run one tool in a child process; wall (inside the child) and peak tree RSS."""
    import psutil

    cmd = [sys.executable, __file__, "--child", tool, "--data", data_json, "--n-perm", str(n_perm), "--out", out]
    import os

    env = dict(os.environ)  # the package from this checkout, in the child and the dask workers
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    proc = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, _tree_rss(proc))
        except psutil.Error:
            pass
        time.sleep(0.05)
    total = time.perf_counter() - t0
    stdout = child.stdout.read()
    if child.returncode != 0:
        raise RuntimeError(f"{tool} failed (status {child.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    return {**result, "total": total, "peak_rss": peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=list(MNI_SHAPE))
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--n-perm", type=int, default=10000)
    parser.add_argument("--small", action="store_true", help="40x48x40 grid, 30 subjects, 1000 flips")
    parser.add_argument("--only", choices=["daskglm", "nilearn"])
    parser.add_argument("--workdir", help="keep the generated data here (default: a temporary directory)")
    parser.add_argument("--child", choices=["daskglm", "nilearn"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, json.loads(Path(args.data).read_text()), args.n_perm, args.out)
        return 0
    if args.small:
        args.shape, args.subjects, args.n_perm = [40, 48, 40], 30, 1000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        t0 = time.perf_counter()
        data = generate(work / "maps", tuple(args.shape), args.subjects)
        data_json = work / "data.json"
        data_json.write_text(json.dumps(data))
        print(f"{args.subjects} maps of {tuple(args.shape)} ({data['n_voxels']:,} in-mask voxels), "
              f"{args.n_perm} sign flips; data generated in {time.perf_counter() - t0:.1f} s")
        results = {}
        for tool in ("daskglm", "nilearn"):
            if args.only and tool != args.only:
                continue
            results[tool] = run_tool(tool, str(data_json), args.n_perm, str(work / f"{tool}_logp.nii.gz"))
            r = results[tool]
            warm = f", second call {r['warm']:.1f} s" if "warm" in r else ""
            print(f"{tool:8s} wall {r['wall']:8.1f} s{warm}  (child process {r['total']:7.1f} s)  "
                  f"peak RSS {r['peak_rss'] / 2**20:8.0f} MiB")
        if len(results) == 2:
            import nibabel as nib

            d, n = results["daskglm"], results["nilearn"]
            print(f"ratio nilearn/daskglm: wall {n['wall'] / d['wall']:.1f}x, "
                  f"peak RSS {n['peak_rss'] / d['peak_rss']:.2f}x")
            a = nib.load(work / "daskglm_logp.nii.gz").get_fdata()
            b = nib.load(work / "nilearn_logp.nii.gz").get_fdata()
            print(f"max |Δ -log10 p_FWE| = {np.max(np.abs(a - b)):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
