"""HCP-scale CIFTI benchmark: daskglm on two .dtseries.nii runs vs nilearn's run_glm on the loaded matrices.

Generates (once, cached in ``--data-dir``) a pair of CIFTI-2 dense time series
with HCP's grayordinate layout (29,696 left and 29,716 right cortical
vertices of 32,492, 31,870 subcortical voxels: 91,282 grayordinates at full
scale; ``--scale`` shrinks every structure), TR 0.72 s, a two-condition block
design plus cosine drifts, AR(1) noise with per-grayordinate ρ.  The files are
written block by block (:func:`daskglm.io.cifti.write_cifti_run`), so
generating never holds a run.

Then, each in a fresh process timed from before Python starts and measured
by ``wait4``'s peak RSS:

- ``daskglm``: ``FirstLevelModel(noise_model="ar1", mask_img=False)`` on both
  files with the design matrices, one t contrast, z map written as
  ``.dscalar.nii``;
- ``nilearn``: each run loaded (``get_fdata``), mean-scaled
  (``mean_scaling``), ``run_glm(noise_model="ar1")``, fixed-effects
  ``compute_contrast``: nilearn's own statistics on the loaded matrices
  (nilearn has no CIFTI input).

The z maps are compared (fraction of grayordinates within 1e-3).

Examples
--------
python benchmarks/bench_cifti.py --scans 1200                     # full: 91,282 x 1,200 x 2 runs
python benchmarks/bench_cifti.py --scale 0.1 --scans 150,600      # quick check
python benchmarks/bench_cifti.py --scale 0.25 --scans 300,1200 --drift-model polynomial --skip-nilearn
                                                                  # RSS vs run length, fixed design width
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

T_R = 0.72
#: HCP's 91k grayordinates: left cortex, right cortex (vertices of 32,492), subcortical voxels
HCP_COUNTS = (29696, 29716, 31870)
MESH_VERTICES = 32492


def brain_models(scale: float):
    from nibabel import cifti2

    n_left, n_right, n_vox = (max(1, int(round(c * scale))) for c in HCP_COUNTS)
    n_mesh = max(int(round(MESH_VERTICES * scale)), n_left, n_right)
    left = np.zeros(n_mesh, bool)
    left[:n_left] = True
    right = np.zeros(n_mesh, bool)
    right[n_mesh - n_right :] = True
    vol = np.zeros((91, 109, 91), bool)
    vol.ravel()[np.linspace(0, vol.size - 1, n_vox).astype(int)] = True
    affine = np.array([[-2, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1.0]])
    return (
        cifti2.BrainModelAxis.from_mask(left, name="CortexLeft")
        + cifti2.BrainModelAxis.from_mask(right, name="CortexRight")
        + cifti2.BrainModelAxis.from_mask(vol, name="Thalamus_Left", affine=affine)
    )


#: design drifts: "cosine" (nilearn's default, high_pass 0.01 Hz: columns grow with the run length) or
#: "polynomial" (order 3: a fixed column count, to see the effect of the run length alone)
DRIFT = {"model": "cosine"}


def design(n_scans: int, run: int):
    import pandas as pd
    from nilearn.glm.first_level import make_first_level_design_matrix

    block = 20 * T_R
    onsets = np.arange(5 + run, n_scans * T_R - 2 * block, 2 * block)
    events = pd.DataFrame({"onset": onsets, "duration": block,
                           "trial_type": np.resize(["task", "control"], len(onsets))})
    return make_first_level_design_matrix(np.arange(n_scans) * T_R, events, hrf_model="glover",
                                          drift_model=DRIFT["model"], drift_order=3)


def ensure_data(scale: float, n_scans: int, data_dir: Path) -> list[dict]:
    from daskglm.io.cifti import write_cifti_run

    bm = brain_models(scale)
    out = data_dir / f"cifti_{len(bm)}x{n_scans}_{DRIFT['model']}"
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for run in range(2):
        X = design(n_scans, run)
        path = out / f"sub-01_task-bench_run-{run + 1}_space-fsLR_den-91k_bold.dtseries.nii"
        dpath = out / f"run-{run + 1}_design.csv"
        if not path.exists():
            print(f"generating {path} ({len(bm)} x {n_scans}) ...", flush=True)

            def fill(g0, g1, X=X, run=run):
                rng = np.random.default_rng([run, g0])
                beta = rng.normal(0, 1, (X.shape[1], g1 - g0))
                beta[-1] = 1000 + rng.uniform(0, 200, g1 - g0)
                rho = rng.uniform(0.0, 0.5, g1 - g0)
                noise = rng.standard_normal((n_scans, g1 - g0)) * 10
                for t in range(1, n_scans):
                    noise[t] += rho * noise[t - 1]
                return X.to_numpy() @ beta + noise

            write_cifti_run(path, bm, n_scans, T_R, fill, dtype=np.float32)
            X.to_csv(dpath, index=False)
        runs.append({"path": str(path), "design": str(dpath)})
    return runs


def _contrast(columns) -> np.ndarray:
    con = np.zeros(len(columns))
    con[list(columns).index("task")] = 1
    con[list(columns).index("control")] = -1
    return con


def worker_daskglm(runs: list[dict], out: Path) -> None:
    import pandas as pd

    from daskglm import FirstLevelModel

    designs = [pd.read_csv(r["design"]) for r in runs]
    model = FirstLevelModel(noise_model="ar1", mask_img=False)
    model.fit([r["path"] for r in runs], design_matrices=designs)
    z = model.compute_contrast("task - control")
    z.to_filename(out / "daskglm_z.dscalar.nii")
    np.save(out / "daskglm_z.npy", np.asarray(z.dataobj)[0])


def worker_nilearn(runs: list[dict], out: Path) -> None:
    import nibabel as nib
    import pandas as pd
    from nilearn.glm import compute_contrast
    from nilearn.glm.first_level import mean_scaling, run_glm

    total = None
    for r in runs:
        X = pd.read_csv(r["design"])
        Y = nib.load(r["path"]).get_fdata()
        Y, _ = mean_scaling(Y)
        labels, results = run_glm(Y, X.to_numpy(), noise_model="ar1")
        del Y
        con = compute_contrast(labels, results, _contrast(X.columns), stat_type="t")
        total = con if total is None else total + con
    total = total * (1.0 / len(runs))
    np.save(out / "nilearn_z.npy", total.z_score())


def measure(engine: str, runs_json: str, out: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--worker", engine, "--runs", runs_json, "--out", str(out)])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{engine} worker failed with status {status}")
    return {"engine": engine, "wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of HCP's grayordinates")
    parser.add_argument("--scans", default="1200", help="comma-separated run lengths")
    parser.add_argument("--data-dir", default="benchmarks/data/cifti")
    parser.add_argument("--skip-nilearn", action="store_true")
    parser.add_argument("--drift-model", choices=("cosine", "polynomial"), default="cosine",
                        help="polynomial (order 3) keeps the design's column count fixed across run lengths")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--runs", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    DRIFT["model"] = args.drift_model
    if args.worker:
        runs = json.loads(args.runs)
        {"daskglm": worker_daskglm, "nilearn": worker_nilearn}[args.worker](runs, Path(args.out))
        return
    for n_scans in [int(s) for s in args.scans.split(",")]:
        runs = ensure_data(args.scale, n_scans, Path(args.data_dir))
        out = Path(runs[0]["path"]).parent
        results = [measure("daskglm", json.dumps(runs), out)]
        if not args.skip_nilearn:
            results.append(measure("nilearn", json.dumps(runs), out))
            a, b = np.load(out / "daskglm_z.npy"), np.load(out / "nilearn_z.npy")
            results.append({"z_within_1e-3": float(np.mean(np.abs(a - b) <= 1e-3)),
                            "z_max_abs_diff": float(np.abs(a - b).max())})
        print(json.dumps({"grayordinates": int(np.load(out / "daskglm_z.npy").size), "scans": n_scans,
                          "runs": 2, "drift_model": args.drift_model, "regressors": len(design(n_scans, 0).columns),
                          "results": results}), flush=True)


if __name__ == "__main__":
    main()
