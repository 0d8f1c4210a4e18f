"""A BIDS study: daskglm ``fit_bids`` on 1 and 2 workers vs nilearn's ``first_level_from_bids`` + fit loop.

For each ``--subjects`` N, generates an N-subject x 2-run BIDS + fMRIPrep-like
dataset (:func:`daskglm.data.bids.make_bids_dataset`), then measures, each
in its own process (so that peak memory is clean) and ``--repeat`` times,
interleaved (nilearn, 1 worker, 2 workers, nilearn, ...):

- ``nilearn``: ``first_level_from_bids`` + ``load_confounds``' sample masks +
  ``fit`` + one z map (in memory) per subject, one subject after the other;
- ``daskglm-<w>w``: ``fit_bids`` on a ``LocalCluster`` of ``w`` single-threaded
  worker processes, with ``contrasts`` and ``bids_out``: the study store plus,
  per subject, the effect/variance/t/z/p maps, designs and mask written as
  BIDS derivatives (more output than nilearn's one z map in memory).

Both use ``mask_img="derivatives"`` and the confounds strategy
``motion + wm_csf + scrub``.  Imports (nilearn's, daskglm's, on the client and
on the workers) and the cluster's start-up happen before the clock starts,
for both engines.

Columns: ``wall s`` (median over the repeats), ``subj/min`` (N / wall),
``client cpu s`` (CPU seconds of the client process while timed; it hosts the
LocalCluster's scheduler too), ``worker cpu s`` (CPU seconds of all worker
processes while timed), ``serial s`` (wall seconds during which no
worker was computing anything: the client's serial part, from the task
stream), ``busy`` (fraction of worker time spent computing), ``client MB`` and
``worker MB`` (peak RSS of the client process and of the largest worker,
sampled every 0.1 s with psutil, no RPC).  Per N: the 2-worker / 1-worker
speed-up in subjects per minute (median, and each interleaved repeat), the
same speed-up estimated from CPU seconds (what a quiet machine would give:
``max(worker cpu / (workers x busy), (worker + client cpu) / cores) + serial s``
per run: the client shares the cores when the workers fill them), the CPU
seconds per subject, and daskglm 1 worker / nilearn.  The load average before
and after each N is printed: on a shared machine, trust the CPU columns, not
the walls.

Usage (the issue's configuration, ~4 minutes on 2 free cores)::

    python benchmarks/bench_study.py --subjects 6 --shape 48 56 48 --scans 200

How the speed-up grows with the study (the client's per-subject work is
what limits it; see docs/studies.md)::

    python benchmarks/bench_study.py --subjects 6 12 24 --shape 48 56 48 --scans 200 --skip-nilearn

Small and quick::

    python benchmarks/bench_study.py --subjects 4 --shape 24 28 24 --scans 120 --repeat 1
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings

STRATEGY = ("motion", "wm_csf", "scrub")
LOAD_CONFOUNDS = {"motion": "basic", "scrub": 0, "fd_threshold": 0.5}
CONTRAST = "face - house"
SPACE = "MNI152NLin2009cAsym"


class _Memory:
    """Peak RSS polled in a thread, with psutil: of this process, or of its largest child (a worker)."""

    def __init__(self, children: bool = False):
        self.children, self.peak, self._stop = children, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._procs, self._polls = [], 0

    def _sample(self) -> int:
        import psutil

        me = psutil.Process()
        if not self.children:
            return me.memory_info().rss
        if self._polls % 20 == 0:  # listing the process tree is the costly part: every 2 s (a worker restarts)
            self._procs = me.children(recursive=True)  # nannies and workers; the workers are the big ones
        self._polls += 1
        sizes = []
        for child in self._procs:
            try:
                sizes.append(child.memory_info().rss)
            except psutil.Error:
                pass
        return max(sizes, default=0)

    def _poll(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._sample())
            except Exception:  # noqa: BLE001 - a poll during shutdown
                pass
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_nilearn(root: str) -> dict:
    from nilearn.glm.first_level import first_level_from_bids
    from nilearn.interfaces.fmriprep import load_confounds

    start, cpu = time.perf_counter(), time.process_time()
    models, imgs, events, confounds = first_level_from_bids(
        root, "faces", space_label=SPACE, mask_img="derivatives", confounds_strategy=STRATEGY,
        **{f"confounds_{k}": v for k, v in LOAD_CONFOUNDS.items()})
    for model, run_imgs, ev, conf in zip(models, imgs, events, confounds):
        _, masks = load_confounds(run_imgs, strategy=STRATEGY, **LOAD_CONFOUNDS)
        model.fit(run_imgs, ev, conf, sample_masks=masks).compute_contrast(CONTRAST)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "subjects": len(models), "client_cpu_s": time.process_time() - cpu,
            "serial_s": wall, "busy": None, "worker_cpu_s": None, "worker_peak_mb": None}


def _warm() -> None:
    """Imports a study needs, done before the clock starts (as nilearn's are)."""
    warnings.simplefilter("ignore")
    import nilearn.glm.first_level  # noqa: F401
    import nilearn.interfaces.fmriprep  # noqa: F401

    import daskglm.studies.bids.study  # noqa: F401


def _idle_and_busy(stream: list, t0: float, t1: float, workers: int) -> tuple[float, float]:
    """Seconds of [t0, t1] with no worker computing; fraction of worker time spent computing."""
    spans = sorted((s["start"], s["stop"]) for task in stream for s in task["startstops"]
                   if s["action"] == "compute")
    busy = sum(b - a for a, b in spans)
    covered, reach = 0.0, t0
    for a, b in spans:
        a, b = max(a, reach), min(b, t1)
        if b > a:
            covered += b - a
            reach = b
    return max(0.0, (t1 - t0) - covered), busy / (workers * (t1 - t0))


def run_daskglm(root: str, workers: int, schedule: str) -> dict:
    from distributed import Client, LocalCluster, get_task_stream

    from daskglm import fit_bids

    _warm()
    tmp = tempfile.mkdtemp(prefix="bench-study-")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client, \
            _Memory(children=True) as memory:
        client.run(_warm)
        worker_cpu = client.run(time.process_time)
        with get_task_stream(client) as stream:
            start, cpu, t0 = time.perf_counter(), time.process_time(), time.time()
            result = fit_bids(root, f"{tmp}/study.zarr", "faces", space_label=SPACE,
                              confounds_strategy=STRATEGY, confounds_kwargs=LOAD_CONFOUNDS, progress=False,
                              resume=False, contrasts={"face-house": CONTRAST}, bids_out=f"{tmp}/out",
                              schedule=schedule)
            wall, cpu, t1 = time.perf_counter() - start, time.process_time() - cpu, time.time()
        worker_cpu = sum(client.run(time.process_time).values()) - sum(worker_cpu.values())
        serial, busy = _idle_and_busy(stream.data, t0, t1, workers)
    shutil.rmtree(tmp, ignore_errors=True)
    assert result.ok, result.failed
    return {"wall_s": wall, "subjects": len(result.completed), "client_cpu_s": cpu, "serial_s": serial,
            "busy": busy, "worker_cpu_s": worker_cpu, "worker_peak_mb": memory.peak / 2**20}


def _child(args) -> None:
    warnings.simplefilter("ignore")
    with _Memory() as client_memory:
        if args.child == "nilearn":
            out = run_nilearn(args.root)
        else:
            out = run_daskglm(args.root, int(args.child), args.schedule)
    out["client_peak_mb"] = client_memory.peak / 2**20
    print(json.dumps(out))


def _measure(root: str, mode: str, schedule: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--root", root, "--schedule", schedule],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_estimate(res: dict, workers: int) -> float:
    """The wall a run's CPU seconds take on a quiet machine: the workers' share, or all cores' (client included).

    The workers' share keeps the measured idle fraction (a worker waiting for the last subject).
    """
    work, cores = res["worker_cpu_s"], os.cpu_count() or 1
    return max(work / (workers * res["busy"]), (work + res["client_cpu_s"]) / cores) + res["serial_s"]


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, nargs="+", default=[6], help="study sizes N to sweep")
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 56, 48))
    parser.add_argument("--scans", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repeats per mode (median shown)")
    parser.add_argument("--schedule", default="auto", choices=["auto", "subjects", "graph"],
                        help="fit_bids(schedule=...): one task per subject, or the client builds every graph")
    parser.add_argument("--skip-nilearn", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    from daskglm.data.bids import make_bids_dataset

    print(f"study benchmark: {args.shape[0]}x{args.shape[1]}x{args.shape[2]} voxels x {args.scans} scans x 2 runs "
          f"per subject; fit_bids schedule={args.schedule!r}; {os.cpu_count()} cores; median of {args.repeat}")
    header = (f"{'N':>4} {'engine':>11} {'wall s':>7} {'subj/min':>8} {'client cpu s':>12} {'worker cpu s':>12} "
              f"{'serial s':>8} {'busy':>5} {'client MB':>9} {'worker MB':>9}")
    print(header, flush=True)
    for n in args.subjects:
        with tempfile.TemporaryDirectory() as tmp:
            root = os.path.join(tmp, "ds")
            make_bids_dataset(root, n_subjects=n, n_sessions=0, n_runs=2, shape=tuple(args.shape),
                              n_scans=args.scans)
            load_before = os.getloadavg()[0]
            modes = ([] if args.skip_nilearn else ["nilearn"]) + [str(w) for w in args.workers]
            runs = collections.defaultdict(list)
            for _ in range(args.repeat):  # interleaved: a load spike hits every mode alike
                for mode in modes:
                    runs[mode].append(_measure(root, mode, args.schedule))
            rates, meds = {}, {}
            for mode in modes:
                res = {k: (statistics.median(v) if all(x is not None for x in v) else None)
                       for k, v in ((k, [r[k] for r in runs[mode]]) for k in runs[mode][0])}
                rates[mode] = 60 * res["subjects"] / res["wall_s"]
                name = "nilearn" if mode == "nilearn" else f"daskglm-{mode}w"
                print(f"{n:>4} {name:>11} {res['wall_s']:>7.1f} {rates[mode]:>8.1f} {res['client_cpu_s']:>12.2f} "
                      f"{_fmt(res['worker_cpu_s'], '>12.2f')} {res['serial_s']:>8.2f} {_fmt(res['busy'], '>5.2f')} "
                      f"{res['client_peak_mb']:>9.0f} {_fmt(res['worker_peak_mb'], '>9.0f')}", flush=True)
                meds[mode] = res
            if "1" in rates and "2" in rates:
                per_run = [60 * n / b["wall_s"] / (60 * n / a["wall_s"]) for a, b in zip(runs["1"], runs["2"])]
                print(f"{n:>4} 2 workers / 1 worker: {rates['2'] / rates['1']:.2f}x  (per repeat: "
                      f"{', '.join(f'{r:.2f}' for r in per_run)})")
                one, two = meds["1"], meds["2"]
                print(f"{n:>4} 2 workers / 1 worker from CPU seconds (a quiet {os.cpu_count()}-core machine): "
                      f"{_cpu_estimate(one, 1) / _cpu_estimate(two, 2):.2f}x; per subject: client "
                      f"{two['client_cpu_s'] / n:.2f} s, worker {one['worker_cpu_s'] / n:.2f} s (1 worker) / "
                      f"{two['worker_cpu_s'] / n:.2f} s (2 workers)")
            if "nilearn" in rates and "1" in rates:
                print(f"{n:>4} daskglm 1 worker / nilearn: {rates['1'] / rates['nilearn']:.2f}x")
            print(f"{n:>4} load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after", flush=True)


if __name__ == "__main__":
    main()
