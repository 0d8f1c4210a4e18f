"""Simulation study: false-positive rate and power of nilearn, binned and exact whitening.

Usage::

    python -m validation.whitening_study            # full study (~10-15 min, 2 cores)
    python -m validation.whitening_study --quick    # smoke run (~1 min)
    python -m validation.whitening_study --out results.md

Prints a Markdown table (the one in ``docs/statistics.md``) and writes it,
plus a JSON copy, to ``--out``.  See :mod:`validation.nullsim` for the
simulation and fitting details.  One setting is also run through the full
``FirstLevelModel`` path (in-memory NIfTI) and checked against the kernel path.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from validation.nullsim import Setting, fit_pvalues, make_design, run_setting, simulate_noise


def settings(quick: bool) -> list[Setting]:
    v = 10_000 if quick else 100_000  # two one-sided tests per voxel
    uni = ("uniform", 0.2, 0.6)
    cells = [
        Setting("AR(1) rho~U(0.2,0.6)", 240, "block", uni, v),
        Setting("AR(1) rho~U(0.2,0.6)", 240, "event", uni, v),
        Setting("AR(1) rho~U(0.2,0.6)", 150, "block", uni, v),
        Setting("AR(1) rho=0.2", 240, "event", (0.2,), v),
        Setting("AR(1) rho=0.4", 240, "block", (0.4,), v),
        Setting("AR(1) rho=0.6", 240, "event", (0.6,), v),
        Setting("AR(2) (0.5,-0.2)", 240, "block", (0.5, -0.2), v),
        Setting("AR(1) rho~U(0.2,0.6)", 1000, "block", uni, v),
        Setting("AR(2) (0.5,-0.2)", 1000, "event", (0.5, -0.2), v),
    ]
    if quick:
        cells = cells[:2] + cells[6:7]
    return cells


def power_settings(quick: bool) -> list[Setting]:
    v = 5_000 if quick else 20_000
    uni = ("uniform", 0.2, 0.6)
    return [
        Setting("power, AR(1) rho~U(0.2,0.6)", 240, "block", uni, v, amplitude=0.25),
        Setting("power, AR(1) rho~U(0.2,0.6)", 240, "event", uni, v, amplitude=1.0),
    ]


def methods_for(order: int) -> dict:
    n = f"ar{order}"
    return {
        "nilearn ar1": ("nilearn", "ar1", None),
        f"binned {n}": ("daskglm", n, "binned"),
        f"exact {n}": ("daskglm", n, "exact"),
    }


def full_path_check(n_voxels: int, seed: int = 7) -> dict:
    """Fit one null setting through ``FirstLevelModel`` and compare with the kernels."""
    import nibabel as nib
    import pandas as pd

    from daskglm import FirstLevelModel

    setting = Setting("full path", 240, "block", ("uniform", 0.2, 0.6), n_voxels)
    X, col = make_design(setting.n_scans, setting.design)
    Y = simulate_noise(setting, n_voxels, np.random.default_rng(seed)) + 100.0
    shape = (n_voxels // 100, 10, 10)
    img = nib.Nifti1Image(Y.T.reshape(*shape, setting.n_scans).astype(np.float64), np.eye(4))
    names = [f"c{i}" for i in range(X.shape[1])]
    names[col] = "task"
    model = FirstLevelModel(mask_img=False, noise_model="ar1", whitening="exact", signal_scaling=False)
    model.fit(img, design_matrices=pd.DataFrame(X, columns=names))
    pv = model.compute_contrast("task", output_type="p_value").get_fdata().reshape(-1)
    ref = fit_pvalues(Y, X, col, "ar1", "exact")
    return {
        "n_tests": 2 * n_voxels,
        "p<0.001": float((np.sum(pv < 1e-3) + np.sum(pv > 1 - 1e-3)) / (2 * n_voxels)),
        "p<0.01": float((np.sum(pv < 1e-2) + np.sum(pv > 1 - 1e-2)) / (2 * n_voxels)),
        "max_abs_diff_p_vs_kernels": float(np.max(np.abs(pv - ref))),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few voxels, few settings")
    parser.add_argument("--out", default=None, help="write the Markdown table (and .json) here")
    args = parser.parse_args(argv)

    rows, record = [], []
    t0 = time.time()
    for s in settings(args.quick) + power_settings(args.quick):
        tic = time.time()
        res = run_setting(s, methods_for(s.order))
        kind = "power" if s.amplitude else "FPR"
        for label, r in res.items():
            rows.append(
                f"| {s.name} | {s.design} | {s.n_scans} | {kind} | {label} | "
                f"{r['p<0.001']:.5f} | {r['p<0.01']:.4f} | {r['n_tests']} |"
            )
            record.append({"setting": s.name, "design": s.design, "n_scans": s.n_scans,
                           "kind": kind, "method": label, **{k: float(v) for k, v in r.items()}})
        print(f"# {s.name} {s.design} n={s.n_scans}: {time.time() - tic:.0f} s", flush=True)
    check = full_path_check(5_000 if args.quick else 20_000)
    header = [
        "| setting | design | scans | measure | method | p<0.001 | p<0.01 | tests |",
        "|---|---|---|---|---|---|---|---|",
    ]
    text = "\n".join(header + rows)
    text += (
        f"\n\nFull FirstLevelModel path (exact ar1, AR(1) rho~U(0.2,0.6), block, 240 scans, "
        f"{check['n_tests']} tests): FPR p<0.001 = {check['p<0.001']:.5f}, p<0.01 = "
        f"{check['p<0.01']:.4f}; max |p - p_kernels| = {check['max_abs_diff_p_vs_kernels']:.2e}."
        f"\nTotal time {time.time() - t0:.0f} s.\n"
    )
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
        with open(args.out.rsplit(".", 1)[0] + ".json", "w") as fh:
            json.dump({"rows": record, "full_path": check}, fh, indent=1)


if __name__ == "__main__":
    main()
