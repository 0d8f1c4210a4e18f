"""A/B of the smoothing + masking step per volume, candidates interleaved in one process.

Candidates (all with nilearn's numerics: sigma per axis, 'reflect', truncate 4):

- ``scipy-inplace``: the previous kernel (box copy, then ``gaussian_filter1d`` in place x, y, z);
- ``scipy-buffers``: ``gaussian_filter1d`` in place on a preallocated per-thread buffer
  (daskglm's fallback without OpenCV);
- ``opencv``: ``cv2.sepFilter2D`` for x and y per plane, then z as a column filter (daskglm's default
  when ``opencv-python-headless`` is installed).

Each is timed on the same chunk of ``--chunk`` volumes (the streaming read size), best of
``--repeats`` interleaved rounds; the maximum relative difference to scipy is printed.

Usage::

    python benchmarks/smoothing_ab.py --shape 96 114 96 --voxel 2     # ~20 s
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.ndimage import gaussian_filter1d

from daskglm.data.fiac import brain_mask, fiac_affine
from daskglm.kernels import masker as km


def _scipy_inplace(m, volumes):
    block = np.array(volumes[(slice(None), *m.crop)], dtype=np.float32, order="C")
    for axis, sigma in zip((3, 2, 1), m.sigmas):
        gaussian_filter1d(block, sigma, axis=axis, output=block, truncate=4.0)
    return np.take(block.reshape(len(block), -1), m.flat_index, axis=1)


def _with_engine(opencv: bool):
    def run(m, volumes):
        saved = km._opencv
        if not opencv:
            km._opencv = lambda: None
        try:
            return m.transform(volumes)
        finally:
            km._opencv = saved
    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 114, 96))
    parser.add_argument("--voxel", type=float, default=2.0)
    parser.add_argument("--fwhm", type=float, default=5.0)
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    m = km.VolumeMasker(brain_mask(shape), fiac_affine(shape, args.voxel), args.fwhm)
    rng = np.random.default_rng(0)
    volumes = (1000 + 100 * rng.standard_normal((args.chunk, *shape[::-1]))).astype(np.float32)
    candidates = {"scipy-inplace": _scipy_inplace, "scipy-buffers": _with_engine(False)}
    if km._opencv() is not None:
        candidates["opencv"] = _with_engine(True)
    ref = _scipy_inplace(m, volumes)
    box = [s.stop - s.start for s in m.crop]
    print(f"volume {shape}, box (z, y, x) {box}, {m.n_voxels} in-mask voxels, sigmas {np.round(m.sigmas, 3)}")
    best = dict.fromkeys(candidates, np.inf)
    for _ in range(args.repeats):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            out = fn(m, volumes)
            best[name] = min(best[name], (time.perf_counter() - t0) / args.chunk)
    for name, fn in candidates.items():
        err = float(np.max(np.abs(fn(m, volumes) - ref)) / np.max(np.abs(ref)))
        print(f"{name:14s} {best[name] * 1e3:6.2f} ms/volume   max rel. diff to scipy {err:.1e}   "
              f"x{best['scipy-inplace'] / best[name]:.2f}")
    del out


if __name__ == "__main__":
    main()
