"""A BIDS study: daskglm ``fit_bids`` on 1 and 2 workers vs nilearn's ``first_level_from_bids`` + fit loop.

Generates an N-subject x 2-run BIDS + fMRIPrep-like dataset
(:func:`daskglm.bids.simulate.make_bids_dataset`), then, each in its own
process so that peak memory is measured cleanly:

- ``nilearn``: ``first_level_from_bids`` + ``fit`` + one z map per subject;
- ``daskglm-<w>``: ``fit_bids`` into a store on a ``LocalCluster`` of ``w``
  worker processes (one thread each), then one z map per subject from the store.

Both use ``mask_img="derivatives"`` and the confound strategy
``motion + wm_csf + scrub``.  Reported: wall time (cluster start-up excluded),
subjects per minute, peak RSS of the client process (sampled every 0.1 s) and of
the largest worker (every 0.2 s), and the 2-worker / 1-worker speed-up.
Several ``--subjects`` values show whether the client's memory grows with the
study (it should stay flat: runs are streamed by the workers, the client
holds designs and masks only).

Usage (small, a couple of minutes on 2 shared cores)::

    python benchmarks/bench_study.py --subjects 4 --shape 24 28 24 --scans 120

Full run (dedicated machine, >= 2 free cores)::

    python benchmarks/bench_study.py --subjects 8 16 --shape 64 76 64 --scans 300
"""

from __future__ import annotations

import argparse
import json
import os
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
    """Peak RSS polled in a thread: of this process (``client=None``) or of a cluster's workers.

    (``ru_maxrss`` would not do for the client: after fork + exec it keeps the parent's peak.)
    """

    def __init__(self, client=None):
        self.client, self.peak, self._stop = client, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> list[int]:
        import psutil

        if self.client is None:
            return [psutil.Process().memory_info().rss]
        return list(self.client.run(lambda: psutil.Process().memory_info().rss).values())

    def _poll(self):
        while not self._stop.is_set():
            try:
                self.peak = max([self.peak, *self._sample()])
            except Exception:  # noqa: BLE001 - a poll during shutdown
                pass
            self._stop.wait(0.1 if self.client is None else 0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_nilearn(root: str) -> dict:
    from nilearn.glm.first_level import first_level_from_bids
    from nilearn.interfaces.fmriprep import load_confounds

    start = time.perf_counter()
    models, imgs, events, confounds = first_level_from_bids(
        root, "faces", space_label=SPACE, mask_img="derivatives", confounds_strategy=STRATEGY,
        **{f"confounds_{k}": v for k, v in LOAD_CONFOUNDS.items()})
    for model, run_imgs, ev, conf in zip(models, imgs, events, confounds):
        _, masks = load_confounds(run_imgs, strategy=STRATEGY, **LOAD_CONFOUNDS)
        model.fit(run_imgs, ev, conf, sample_masks=masks).compute_contrast(CONTRAST)
    return {"wall_s": time.perf_counter() - start, "subjects": len(models), "worker_peak_mb": None}


def run_daskglm(root: str, workers: int) -> dict:
    from distributed import Client, LocalCluster

    from daskglm import fit_bids, open_subject

    store = tempfile.mkdtemp(prefix="bench-study-") + "/study.zarr"
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client, \
            _Memory(client) as memory:
        start = time.perf_counter()
        result = fit_bids(root, store, "faces", space_label=SPACE, confounds_strategy=STRATEGY,
                          confounds_kwargs=LOAD_CONFOUNDS, progress=False, resume=False)
        for sid in result.completed:
            open_subject(store, sid).compute_contrast(CONTRAST)
        wall = time.perf_counter() - start
    assert result.ok, result.failed
    return {"wall_s": wall, "subjects": len(result.completed), "worker_peak_mb": memory.peak / 2**20}


def _child(args) -> None:
    warnings.simplefilter("ignore")
    with _Memory() as client_memory:
        out = run_nilearn(args.root) if args.mode == "nilearn" else run_daskglm(args.root, int(args.mode))
    out["client_peak_mb"] = client_memory.peak / 2**20
    print(json.dumps(out))


def _measure(root: str, mode: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--root", root],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, nargs="+", default=[4])
    parser.add_argument("--shape", type=int, nargs=3, default=(24, 28, 24))
    parser.add_argument("--scans", type=int, default=120)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-nilearn", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.mode = args.child
        _child(args)
        return
    from daskglm.bids.simulate import make_bids_dataset

    print(f"{'subjects':>8} {'engine':>10} {'wall s':>8} {'subj/min':>9} {'client MB':>10} {'worker MB':>10}")
    for n in args.subjects:
        with tempfile.TemporaryDirectory() as tmp:
            root = os.path.join(tmp, "ds")
            make_bids_dataset(root, n_subjects=n, n_sessions=0, n_runs=2, shape=tuple(args.shape),
                              n_scans=args.scans)
            modes = ([] if args.skip_nilearn else ["nilearn"]) + [str(w) for w in args.workers]
            rates = {}
            for mode in modes:
                res = _measure(root, mode)
                rate = 60 * res["subjects"] / res["wall_s"]
                rates[mode] = rate
                name = "nilearn" if mode == "nilearn" else f"daskglm-{mode}w"
                worker = "-" if res["worker_peak_mb"] is None else f"{res['worker_peak_mb']:.0f}"
                print(f"{n:>8} {name:>10} {res['wall_s']:>8.1f} {rate:>9.2f} "
                      f"{res['client_peak_mb']:>10.0f} {worker:>10}", flush=True)
            if "1" in rates and "2" in rates:
                print(f"{n:>8} scaling 2 workers / 1 worker: {rates['2'] / rates['1']:.2f}x")
            if "nilearn" in rates and "1" in rates:
                print(f"{n:>8} daskglm 1 worker / nilearn: {rates['1'] / rates['nilearn']:.2f}x")


if __name__ == "__main__":
    main()
