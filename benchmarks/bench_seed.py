"""Seed workload, nilearn vs daskglm, on generated data of growing size.

For each size the script generates a FIAC-like two-run dataset (cached in
``--data-dir``), then runs, alternating in fresh processes, nilearn's and
daskglm's version of the seed example (``seed_workload.py``: one changed
import).  Each process is timed from before Python starts (so imports count)
and its peak RSS is read from ``wait4``'s rusage.  The read floor is the time
to decompress both runs once with ISA-L, one process per run.  The z maps of
both engines are compared.  ``--zarr`` adds the same daskglm workload from
the runs converted to NIfTI-Zarr (once, into ``DATASET/zarr``), with its own
read floor (both stores read once, no fit) and CPU seconds; its maps are
compared with the ``.nii.gz`` ones.

Examples
--------
python benchmarks/bench_seed.py --sizes all --repeat 2   # every figure of issue 17 (~15 min)
python benchmarks/bench_seed.py --sizes seed            # 64x76x64x300 x 2 runs
python benchmarks/bench_seed.py --sizes seed,large,long --skip-nilearn-above 3e9
python benchmarks/bench_seed.py --sizes large --zarr --skip-nilearn-above 0 --within-run-zarr  # issue 25
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
# children (engines, dask workers) import the daskglm of this checkout, installed or not
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
SIZES = {
    "tiny": ((32, 38, 32), 150),
    "seed": ((64, 76, 64), 300),
    "large": ((96, 114, 96), 450),
    "long": ((64, 76, 64), 1200),
}
#: Same runs as another size, with the design cut to the seed's 13 columns
#: (5 conditions, 7 drifts, constant): isolates the effect of the run length
#: from that of the drift basis, which grows with it (52 columns at 1200 scans).
FIXED_DESIGN = {"long13": ("long", 13), "seed9": ("seed", 9), "long9": ("long", 9)}
#: ``--sizes all``: every figure of issue 17's table
ALL = "seed,large,seed9,long9"


def ensure_dataset(name: str, data_dir: Path) -> Path:
    if name in FIXED_DESIGN:
        return _fixed_design_dataset(name, data_dir)
    shape, n_scans = SIZES[name]
    path = data_dir / f"{name}_{'x'.join(map(str, shape))}x{n_scans}"
    if not (path / "dataset.json").exists():
        from daskglm.data.fiac import make_fiac_like

        voxel = 3.0 if shape[0] <= 64 else 2.0
        print(f"[{name}] generating {shape} x {n_scans} x 2 runs in {path} ...", flush=True)
        make_fiac_like(path, shape=shape, n_scans=n_scans, voxel_size=voxel, seed=0)
    return path


def _fixed_design_dataset(name: str, data_dir: Path) -> Path:
    base_name, n_columns = FIXED_DESIGN[name]
    base = ensure_dataset(base_name, data_dir)
    path = data_dir / f"{name}_from_{base.name}"
    path.mkdir(parents=True, exist_ok=True)
    data = json.loads((base / "dataset.json").read_text())
    for i in (1, 2):
        X = np.load(data[f"design_matrix{i}"])["X"]
        keep = list(range(n_columns - 1)) + [X.shape[1] - 1]  # conditions, first drifts, constant
        np.savez(path / f"run{i}_design.npz", X=X[:, keep])
        data[f"design_matrix{i}"] = str(path / f"run{i}_design.npz")
    (path / "dataset.json").write_text(json.dumps(data, indent=1))
    return path


def run_measured(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError(f"{cmd} failed with status {status}")
    return wall, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def _decompress(path: str) -> float:
    """CPU seconds to decompress one run with ISA-L."""
    from isal import igzip

    start = time.process_time()
    with igzip.open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass
    return time.process_time() - start


def read_floor(dataset: Path) -> tuple[float, float]:
    """Wall and CPU seconds to decompress both runs once with ISA-L, one process per run."""
    data = json.loads((dataset / "dataset.json").read_text())
    runs = [data["func1"], data["func2"]]
    with Pool(2) as pool:
        pool.map(abs, [0, 0])  # start the workers before timing
        t0 = time.perf_counter()
        cpu = sum(pool.map(_decompress, runs))
        return time.perf_counter() - t0, cpu


def zarr_dataset(dataset: Path) -> Path:
    """``dataset/zarr``: the same dataset with its runs as NIfTI-Zarr stores (converted once, both runs at once)."""
    from daskglm.io.nifti_zarr_write import convert_runs

    out = dataset / "zarr"
    if not (out / "dataset.json").exists():
        data = json.loads((dataset / "dataset.json").read_text())
        start = time.perf_counter()
        stores = convert_runs([data["func1"], data["func2"]], out, overwrite=True)
        print(f"[zarr] converted both runs in {time.perf_counter() - start:.1f} s "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        data.update(func1=str(stores[0]), func2=str(stores[1]))
        (out / "dataset.json").write_text(json.dumps(data, indent=1))
    return out


def _read_zarr(store: str) -> float:
    """CPU seconds to read one NIfTI-Zarr run once, as a fit streams it (2 scans at a time)."""
    from daskglm.io.nifti_zarr import NiftiZarrRunSource

    start = time.process_time()
    source = NiftiZarrRunSource(store)
    for _ in source.iter_range(0, source.n_scans, 2):
        pass
    return time.process_time() - start


def zarr_read_floor(dataset: Path) -> tuple[float, float]:
    """Wall and CPU seconds to read both NIfTI-Zarr runs once (read only, no fit), one process per run."""
    data = json.loads((dataset / "dataset.json").read_text())
    with Pool(2) as pool:
        pool.map(abs, [0, 0])
        t0 = time.perf_counter()
        cpu = sum(pool.map(_read_zarr, [data["func1"], data["func2"]]))
        return time.perf_counter() - t0, cpu


def within_run_zarr(data_dir: Path, size: str = "long", repeats: int = 2) -> tuple[float, float]:
    """One NIfTI-Zarr run of ``size`` fitted on a LocalCluster of 1 vs 2 single-threaded workers (best of)."""
    import pandas as pd
    from distributed import Client, LocalCluster
    from within_run_scaling import _fit_once

    dataset = ensure_dataset(size, data_dir)
    data = json.loads((zarr_dataset(dataset) / "dataset.json").read_text())
    design = pd.DataFrame(np.load(data["design_matrix1"])["X"])
    clusters = {n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
                for n in (1, 2)}
    times = {1: [], 2: []}
    try:
        for rep in range(repeats):
            for n in ((1, 2) if rep % 2 == 0 else (2, 1)):
                with Client(clusters[n]):
                    times[n].append(_fit_once(data["func1"], data["mask"], design))
                print(f"[within-run zarr] {n} worker(s): {times[n][-1]:.2f} s "
                      f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for cluster in clusters.values():
            cluster.close()
    one, two = min(times[1]), min(times[2])
    print(f"[within-run zarr] {data['func1']}: 1 worker {one:.2f} s, 2 workers {two:.2f} s, "
          f"speed-up {one / two:.2f}x (load average {os.getloadavg()[0]:.1f})", flush=True)
    return one, two


def compare_maps(dir_a: Path, dir_b: Path, mask_path: str) -> tuple[float, float]:
    """Worst fraction of in-mask voxels within 1e-3 in z, and max |dz|, over contrasts."""
    mask = np.asarray(nib.load(mask_path).dataobj) != 0
    worst_frac, worst_diff = 1.0, 0.0
    for a in sorted(dir_a.glob("*_z_map.nii.gz")):
        za = nib.load(a).get_fdata()[mask]
        zb = nib.load(dir_b / a.name).get_fdata()[mask]
        diff = np.abs(za - zb)
        worst_frac = min(worst_frac, float(np.mean(diff <= 1e-3)))
        worst_diff = max(worst_diff, float(diff.max()))
    return worst_frac, worst_diff


def print_table(rows: list[dict]) -> None:
    """The issue's table: speed-up and RSS against nilearn, time against the read floor, RSS vs scans."""
    print("\n| dataset (2 runs) | regressors | nilearn | daskglm | speed-up | RSS daskglm / nilearn "
          "| read floor | daskglm / floor | CPU daskglm / floor | z within 1e-3 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        shape = "x".join(map(str, r["shape"])) + f"x{r['n_scans']}"
        nil = f"{r['nilearn_s']:.1f} s, {r['nilearn_MB']:.0f} MB" if "nilearn_s" in r else "-"
        speed = f"{r['speedup']:.1f}x" if "speedup" in r else "-"
        ratio = f"{r['rss_ratio']:.1%}" if "rss_ratio" in r else "-"
        within = f"{r['z_fraction_within_1e3']:.4%}" if "z_fraction_within_1e3" in r else "-"
        print(f"| {r['size']} {shape} | {r['regressors']} | {nil} | {r['daskglm_s']:.1f} s, "
              f"{r['daskglm_MB']:.0f} MB | {speed} | {ratio} | {r['read_floor_s']:.2f} s | "
              f"{r['daskglm_s'] / r['read_floor_s']:.2f}x | "
              f"{r['daskglm_cpu_s']:.1f} / {r['read_floor_cpu_s']:.1f} CPU-s | {within} |")
    if any("zarr_s" in r for r in rows):
        print("\n| dataset (2 runs) | from .nii.gz | from NIfTI-Zarr | Zarr speed-up | Zarr read floor "
              "| Zarr fit / floor | max abs dz Zarr vs gz |")
        print("|---|---|---|---|---|---|---|")
        for r in (r for r in rows if "zarr_s" in r):
            shape = "x".join(map(str, r["shape"])) + f"x{r['n_scans']}"
            print(f"| {r['size']} {shape} | {r['daskglm_s']:.1f} s, {r['daskglm_cpu_s']:.1f} CPU-s, "
                  f"{r['daskglm_MB']:.0f} MB | {r['zarr_s']:.1f} s, {r['zarr_cpu_s']:.1f} CPU-s, {r['zarr_MB']:.0f} MB "
                  f"| {r['zarr_speedup_vs_gz']:.2f}x | {r['zarr_floor_s']:.2f} s ({r['zarr_floor_cpu_s']:.2f} CPU-s) "
                  f"| {r['zarr_s'] / r['zarr_floor_s']:.1f}x | {r['zarr_vs_gz_max_dz']:.1e} |")
    by_name = {r["size"]: r for r in rows}
    for short, long in (("seed9", "long9"), ("seed", "long13")):
        if short in by_name and long in by_name:
            print(f"\npeak RSS {long} / {short} (same design width, 4x the scans): "
                  f"{by_name[long]['daskglm_MB']:.0f} / {by_name[short]['daskglm_MB']:.0f} MB = "
                  f"{by_name[long]['daskglm_MB'] / by_name[short]['daskglm_MB']:.2f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="seed",
                        help=f"comma-separated, from {list(SIZES) + list(FIXED_DESIGN)}")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    parser.add_argument("--repeat", type=int, default=1, help="alternated repetitions per engine")
    parser.add_argument("--skip-nilearn-above", type=float, default=float("inf"),
                        help="skip nilearn when the raw data exceed this many bytes")
    parser.add_argument("--floor-repeats", type=int, default=3, help="best of this many read floors")
    parser.add_argument("--within-run", action="store_true",
                        help="also time one long run on 1 vs 2 workers (within_run_scaling.py)")
    parser.add_argument("--zarr", action="store_true",
                        help="also fit the same runs converted to NIfTI-Zarr (converted once into DATASET/zarr), "
                             "with their own read floor (read only)")
    parser.add_argument("--within-run-zarr", action="store_true",
                        help="also time one long NIfTI-Zarr run on 1 vs 2 workers")
    args = parser.parse_args(argv)
    if args.sizes == "all":
        args.sizes, args.within_run = ALL, True
        args.skip_nilearn_above = min(args.skip_nilearn_above, 1e9)  # nilearn on the seed case only
    rows = []
    for name in args.sizes.split(","):
        dataset = ensure_dataset(name, args.data_dir)
        shape, n_scans = SIZES[FIXED_DESIGN.get(name, (name,))[0]]
        raw_bytes = 2 * 4 * int(np.prod(shape)) * n_scans
        engines = ["daskglm"] + (["nilearn"] if raw_bytes <= args.skip_nilearn_above else [])
        zarr_dir = zarr_dataset(dataset) if args.zarr else None
        if zarr_dir is not None:
            engines.append("daskglm-zarr")
        floors = [read_floor(dataset) for _ in range(args.floor_repeats)]
        floor, floor_cpu = min(w for w, _ in floors), min(c for _, c in floors)
        results = {e: [] for e in engines}
        for rep in range(args.repeat):
            for engine in (engines if rep % 2 == 0 else engines[::-1]):
                out = args.out_dir / name / engine
                source = zarr_dir if engine == "daskglm-zarr" else dataset
                cmd = [sys.executable, str(HERE / "seed_workload.py"), engine.split("-")[0], str(source), str(out)]
                wall, rss, cpu = run_measured(cmd)
                results[engine].append((wall, rss, cpu))
                print(f"[{name}] {engine:8s} wall {wall:7.2f} s  peak RSS {rss:8.1f} MB  CPU {cpu:7.2f} s",
                      flush=True)
        best = {e: (min(w for w, _, _ in r), max(m for _, m, _ in r), min(c for _, _, c in r))
                for e, r in results.items()}
        data = json.loads((dataset / "dataset.json").read_text())
        n_regressors = int(np.load(data["design_matrix1"])["X"].shape[1])
        row = {"size": name, "shape": list(shape), "n_scans": n_scans, "regressors": n_regressors,
               "raw_GB": raw_bytes / 1e9,
               "read_floor_s": floor, "read_floor_cpu_s": floor_cpu, "daskglm_s": best["daskglm"][0],
               "daskglm_MB": best["daskglm"][1], "daskglm_cpu_s": best["daskglm"][2]}
        # CPU seconds are the load-proof view: on 2 cores the wall time is at least CPU / 2
        print(f"[{name}] {n_regressors} regressors; read floor (ISA-L, 1 process per run): {floor:.2f} s "
              f"({floor_cpu:.2f} CPU-s); daskglm / floor = {best['daskglm'][0] / floor:.2f} "
              f"(CPU {best['daskglm'][2]:.2f} s = {best['daskglm'][2] / floor_cpu:.2f}x the floor's CPU)")
        if "daskglm-zarr" in best:
            zfloor = min((zarr_read_floor(zarr_dir) for _ in range(args.floor_repeats)), key=lambda f: f[0])
            zfloor_cpu = zfloor[1]
            _, zdiff = compare_maps(args.out_dir / name / "daskglm-zarr", args.out_dir / name / "daskglm",
                                    data["mask"])
            row.update(zarr_s=best["daskglm-zarr"][0], zarr_MB=best["daskglm-zarr"][1],
                       zarr_cpu_s=best["daskglm-zarr"][2], zarr_floor_s=zfloor[0], zarr_floor_cpu_s=zfloor_cpu,
                       zarr_speedup_vs_gz=best["daskglm"][0] / best["daskglm-zarr"][0], zarr_vs_gz_max_dz=zdiff)
            print(f"[{name}] NIfTI-Zarr: fit {row['zarr_s']:.2f} s ({row['zarr_cpu_s']:.2f} CPU-s, peak RSS "
                  f"{row['zarr_MB']:.0f} MB) = {row['zarr_speedup_vs_gz']:.2f}x faster than from .nii.gz; "
                  f"Zarr read floor {zfloor[0]:.2f} s ({zfloor_cpu:.2f} CPU-s); max |dz| vs .nii.gz {zdiff:.1e} "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        if "nilearn" in best:
            frac, diff = compare_maps(args.out_dir / name / "daskglm", args.out_dir / name / "nilearn",
                                      data["mask"])
            row.update(nilearn_s=best["nilearn"][0], nilearn_MB=best["nilearn"][1], nilearn_cpu_s=best["nilearn"][2],
                       speedup=best["nilearn"][0] / best["daskglm"][0],
                       rss_ratio=best["daskglm"][1] / best["nilearn"][1],
                       z_fraction_within_1e3=frac, z_max_abs_diff=diff)
            print(f"[{name}] speedup {row['speedup']:.2f}x, RSS daskglm/nilearn "
                  f"{row['rss_ratio']:.1%}, z maps: {frac:.5f} of voxels within 1e-3 (max |dz| {diff:.2e})")
        rows.append(row)
    if args.within_run:
        cmd = [sys.executable, str(HERE / "within_run_scaling.py"), "--data-dir", str(args.data_dir)]
        print("[within-run]", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    if args.within_run_zarr:
        within_run_zarr(args.data_dir, repeats=max(args.repeat, 2))
    print(json.dumps(rows, indent=1))
    print_table(rows)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "summary.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
