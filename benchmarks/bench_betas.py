"""Single-trial betas: daskglm's BetaSeriesModel against nilearn's per-trial loop, on one generated run.

For each trial count the script generates an event-related run (cached in
``--data-dir``; ``.nii.gz``, 64x76x64 x 400 scans by default, two conditions,
AR(1) noise), then measures, each in a fresh process (wall from before Python
starts, peak RSS from ``wait4``'s rusage):

- daskglm: ``BetaSeriesModel(method=..., noise_model=...)``, every trial's beta
  computed (one streaming pass);
- nilearn: the loop of its example ``examples/07_advanced/plot_beta_series.py``
  (one ``FirstLevelModel.fit`` + ``compute_contrast`` per trial, the run given
  as a path), timed on ``--nilearn-sample`` trials and EXTRAPOLATED to all
  trials (printed as such).  Both get the same mask image.

The betas of the sampled trials are compared (fraction of in-mask voxels
within 1e-3 relative of nilearn's, per trial, worst trial).

Examples
--------
python benchmarks/bench_betas.py                         # 50 trials, small check
python benchmarks/bench_betas.py --trials 100,200 --nilearn-sample 3
python benchmarks/bench_betas.py --shape 32,38,32 --scans 200 --trials 50   # quick
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

HERE = Path(__file__).resolve().parent
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
T_R = 2.0


def ensure_run(data_dir: Path, shape: tuple, n_scans: int, n_trials: int, seed: int = 0) -> Path:
    """Generate (once) the run, its events and its mask."""
    import pandas as pd

    from daskglm.data.volumes import ar1_noise, centred_affine, ellipsoid, save_mask, write_nifti_stream

    path = data_dir / f"betas_{'x'.join(map(str, shape))}x{n_scans}_{n_trials}trials"
    if (path / "done").exists():
        return path
    from nilearn.glm.first_level import make_first_level_design_matrix

    path.mkdir(parents=True, exist_ok=True)
    print(f"generating {shape} x {n_scans} with {n_trials} trials in {path} ...", flush=True)
    rng = np.random.default_rng(seed)
    span = n_scans * T_R
    onsets = np.sort(rng.uniform(2.0, span - 20.0, n_trials)).round(2)
    events = pd.DataFrame({"onset": onsets, "duration": 1.0,
                           "trial_type": np.array(["face", "house"])[rng.integers(0, 2, n_trials)]})
    events.to_csv(path / "events.tsv", sep="\t", index=False)
    mask = ellipsoid(shape, (0.85, 0.85, 0.85), (0.0, 0.0, 0.0))
    affine = centred_affine(shape, 3.0)
    save_mask(path / "mask.nii.gz", mask, affine)
    # each condition's response: its trials' regressors with random per-trial scaling, times a spatial map
    frame_times = np.arange(n_scans) * T_R
    scaled = events.assign(modulation=rng.uniform(0.5, 1.5, n_trials))
    X = make_first_level_design_matrix(frame_times, scaled, hrf_model="glover", drift_model=None)
    maps = {c: rng.normal(1.0, 1.0, shape).astype(np.float32) * 5.0 for c in ("face", "house")}
    noise_rows = 16

    def volumes():
        base = (500.0 + 50.0 * rng.random(shape)).astype(np.float32) * mask
        noise = ar1_noise(rng, shape + (noise_rows,), 3, 0.3).astype(np.float32) * 3.0
        prev = noise[..., -1]
        for t in range(n_scans):
            k = t % noise_rows
            if k == 0 and t:
                fresh = rng.normal(0, 3.0, shape + (noise_rows,)).astype(np.float32)
                for j in range(noise_rows):
                    prev = 0.3 * prev + fresh[..., j]
                    noise[..., j] = prev
            vol = base + sum(X[c].to_numpy()[t] * maps[c] for c in maps) * mask + noise[..., k] * mask
            yield vol

    write_nifti_stream(path / "run.nii.gz", shape + (n_scans,), affine, volumes(), t_r=T_R)
    (path / "done").write_text("ok")
    return path


def run_measured(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{cmd} failed with status {status}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024.0


def worker_daskglm(path: Path, out: Path, method: str, noise_model: str) -> None:
    from daskglm import BetaSeriesModel

    model = BetaSeriesModel(method=method, t_r=T_R, mask_img=str(path / "mask.nii.gz"), noise_model=noise_model)
    model.fit(str(path / "run.nii.gz"), str(path / "events.tsv"))
    np.save(out, model.betas_.values)  # the plain path: dask's default threaded scheduler, no persist()


def worker_nilearn(path: Path, out: Path, method: str, noise_model: str, trials: list[int]) -> None:
    """nilearn's example loop (LSS: one FirstLevelModel per trial), on the given trials only."""
    import warnings

    import pandas as pd
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.maskers import NiftiMasker

    sys.path.insert(0, str(HERE.parent))
    from tests.betas._recipes import lss_transformer

    warnings.simplefilter("ignore")
    events = pd.read_csv(path / "events.tsv", sep="\t")
    mask = str(path / "mask.nii.gz")
    masker = NiftiMasker(mask).fit()
    rows, seconds = [], []
    for i in trials:
        t0 = time.perf_counter()
        lss, name = lss_transformer(events, i, collapse=method == "lss1")
        glm = FirstLevelModel(t_r=T_R, mask_img=mask, noise_model=noise_model).fit(str(path / "run.nii.gz"), lss)
        beta = glm.compute_contrast(name, output_type="effect_size")
        seconds.append(time.perf_counter() - t0)
        rows.append(np.ravel(masker.transform(beta)))
    np.save(out, np.array(rows))
    Path(str(out) + ".json").write_text(json.dumps(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", default="50", help="comma-separated trial counts (e.g. 50,100,200,400)")
    parser.add_argument("--shape", default="64,76,64")
    parser.add_argument("--scans", type=int, default=400)
    parser.add_argument("--method", default="lss", choices=["lss", "lss1"])
    parser.add_argument("--noise-model", default="ar1")
    parser.add_argument("--nilearn-sample", type=int, default=3, help="trials nilearn fits (then extrapolated)")
    parser.add_argument("--data-dir", default=str(HERE / "data" / "betas"))
    parser.add_argument("--worker", choices=["daskglm", "nilearn"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--sample", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "daskglm":
        return worker_daskglm(Path(args.path), Path(args.out), args.method, args.noise_model)
    if args.worker == "nilearn":
        sample = [int(s) for s in args.sample.split(",")]
        return worker_nilearn(Path(args.path), Path(args.out), args.method, args.noise_model, sample)

    shape = tuple(int(s) for s in args.shape.split(","))
    data_dir = Path(args.data_dir)
    print(f"load average at start: {os.getloadavg()}  (timings on a shared, loaded machine are noisy)")
    for n_trials in [int(t) for t in args.trials.split(",")]:
        path = ensure_run(data_dir, shape, args.scans, n_trials)
        common = ["--method", args.method, "--noise-model", args.noise_model, "--path", str(path)]
        ours_out = path / "daskglm_betas.npy"
        wall_d, rss_d = run_measured([sys.executable, __file__, "--worker", "daskglm", "--out", str(ours_out),
                                      *common])
        sample = np.linspace(0, n_trials - 1, args.nilearn_sample).round().astype(int).tolist()
        ref_out = path / "nilearn_betas.npy"
        wall_n, rss_n = run_measured([sys.executable, __file__, "--worker", "nilearn", "--out", str(ref_out),
                                      "--sample", ",".join(map(str, sample)), *common])
        per_trial = json.loads(Path(str(ref_out) + ".json").read_text())
        startup = wall_n - sum(per_trial)
        nilearn_total = startup + np.mean(per_trial) * n_trials
        ours, ref = np.load(ours_out)[sample], np.load(ref_out)
        scale = np.abs(ref).max(axis=1, keepdims=True)
        close = np.abs(ours - ref) <= 1e-3 * np.maximum(np.abs(ref), 1e-3 * scale)
        print(json.dumps({
            "trials": n_trials, "shape": shape, "scans": args.scans, "method": args.method,
            "noise_model": args.noise_model,
            "daskglm_wall_s": round(wall_d, 1), "daskglm_peak_rss_mb": round(rss_d),
            "nilearn_sampled_trials": len(sample), "nilearn_s_per_trial": round(float(np.mean(per_trial)), 2),
            "nilearn_wall_s_EXTRAPOLATED": round(float(nilearn_total), 1), "nilearn_peak_rss_mb": round(rss_n),
            "speedup_vs_extrapolated_nilearn": round(float(nilearn_total / wall_d), 1),
            "beta_agreement_worst_trial": round(float(close.mean(axis=1).min()), 5),
            "max_abs_diff_over_max_beta": float(np.abs(ours - ref).max() / np.abs(ref).max()),
            "load_average": os.getloadavg(),
        }), flush=True)


if __name__ == "__main__":
    main()
