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

Surface and CIFTI cases (``--case``):

* ``surface``: one smooth effect map per subject on both hemispheres of
  fsaverage5 (20,484 vertices), ``--n-perm`` sign flips (default 1,000 for
  this case) with ``--tfce`` on the mesh for daskglm; nilearn 0.14.1 has no
  surface TFCE (it warns and skips it), so its run is max-T only and the
  two ``logp_max_t`` maps are compared;
* ``cifti``: dense scalar maps over 91,282 fsLR-91k-sized grayordinates
  (29,696 + 29,716 cortical vertices of 32,492 each, 31,870 subcortical
  voxels; synthetic brain models: no fsLR file is needed), max-T; nilearn
  reads no CIFTI, so its reference is its public ``permuted_ols`` on the
  same matrix (read before its clock starts), ``n_jobs=2``.

Smaller runs::

    python benchmarks/bench_group.py --small            # 40x48x40, 30 subjects, 1000 flips
    python benchmarks/bench_group.py --shape 60 72 60 --subjects 50 --n-perm 2000
    python benchmarks/bench_group.py --only daskglm     # skip nilearn
    python benchmarks/bench_group.py --case surface --tfce --subjects 100 --n-perm 1000
    python benchmarks/bench_group.py --case cifti --subjects 100 --n-perm 1000
    python benchmarks/bench_group.py --case surface --tfce --small   # 20 subjects, 50 flips
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


def generate_surface(out: Path, n_subjects: int, seed: int = 0) -> dict:
    """Smooth effect maps on fsaverage5 (one GIfTI per hemisphere and subject) and a one-column design."""
    import nibabel as nib
    import pandas as pd
    from nilearn.datasets import load_fsaverage

    from daskglm.kernels.mesh import SurfacePart, smoothing_operator

    out.mkdir(parents=True, exist_ok=True)
    mesh = load_fsaverage("fsaverage5")["pial"]
    rng = np.random.default_rng(seed)
    ops = {}
    for part in ("left", "right"):
        m = mesh.parts[part].loaded()
        ops[part] = smoothing_operator(SurfacePart(m.n_vertices, m.coordinates, m.faces))
    maps = []
    for i in range(n_subjects):
        entry = {}
        for part, op in ops.items():
            values = rng.standard_normal(op.shape[0])
            for _ in range(20):
                values = op @ values
            values = values * 3 + np.where(np.arange(op.shape[0]) < 800, 0.5, 0.0)
            entry[part] = str(out / f"sub-{i:03d}_hemi-{part[0].upper()}_effect.func.gii")
            nib.save(nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(values.astype(np.float32))]),
                     entry[part])
        maps.append(entry)
    design = str(out / "design.tsv")
    pd.DataFrame({"intercept": np.ones(n_subjects)}).to_csv(design, sep="\t", index=False)
    return {"case": "surface", "maps": maps, "design": design, "n_voxels": int(sum(o.shape[0] for o in ops.values()))}


#: fsLR 91k: cortical vertices kept per hemisphere (of 32,492) and subcortical voxels
FSLR_CORTEX = (29696, 29716)
FSLR_MESH = 32492
FSLR_VOXELS = 31870


def fslr_like_brain_models():
    """Brain models of fsLR-91k's sizes (91,282 grayordinates): two cortices and one subcortical block."""
    from nibabel import cifti2

    models = []
    for name, kept in zip(("CortexLeft", "CortexRight"), FSLR_CORTEX):
        cortex = np.zeros(FSLR_MESH, dtype=bool)
        cortex[np.linspace(0, FSLR_MESH - 1, kept).round().astype(int)] = True
        models.append(cifti2.BrainModelAxis.from_mask(cortex, name=name))
    volume = brain_mask(MNI_SHAPE)
    inside = np.argwhere(volume)
    centre = np.array(MNI_SHAPE) / 2
    order = np.argsort(np.abs(inside - centre).sum(axis=1), kind="stable")[:FSLR_VOXELS]
    sub = np.zeros(MNI_SHAPE, dtype=bool)
    sub[tuple(inside[order].T)] = True
    models.append(cifti2.BrainModelAxis.from_mask(sub, name="ThalamusLeft", affine=MNI_AFFINE))
    return models[0] + models[1] + models[2]


def generate_cifti(out: Path, n_subjects: int, seed: int = 0) -> dict:
    """One ``.dscalar.nii`` per subject over :func:`fslr_like_brain_models` and a one-column design."""
    import pandas as pd
    from nibabel import cifti2

    out.mkdir(parents=True, exist_ok=True)
    bm = fslr_like_brain_models()
    rng = np.random.default_rng(seed)
    n = len(bm)
    paths = []
    for i in range(n_subjects):
        values = rng.standard_normal(n).astype(np.float32) * 3 + np.where(np.arange(n) < 2000, 0.5, 0.0)
        header = cifti2.Cifti2Header.from_axes((cifti2.ScalarAxis(["effect"]), bm))
        paths.append(str(out / f"sub-{i:03d}_effect.dscalar.nii"))
        cifti2.Cifti2Image(values[None].astype(np.float32), header=header).to_filename(paths[-1])
    design = str(out / "design.tsv")
    pd.DataFrame({"intercept": np.ones(n_subjects)}).to_csv(design, sep="\t", index=False)
    return {"case": "cifti", "maps": paths, "design": design, "n_voxels": n}


def _surface_inputs(data: dict):
    """The subjects' SurfaceImages on an in-memory fsaverage5 (read before any clock starts)."""
    import nibabel as nib
    from nilearn.datasets import load_fsaverage
    from nilearn.surface import PolyMesh, SurfaceImage

    pial = load_fsaverage("fsaverage5")["pial"]
    mesh = PolyMesh(**{p: pial.parts[p].loaded() for p in ("left", "right")})
    return [SurfaceImage(mesh=mesh, data={p: np.asarray(nib.load(entry[p]).darrays[0].data) for p in entry})
            for entry in data["maps"]]


def _save(img, out: str) -> None:
    """A result map as a flat .npy (every case: volumes, surfaces, CIFTI)."""
    import nibabel as nib

    if isinstance(img, np.ndarray):
        values = img
    elif hasattr(img, "mesh"):
        values = np.concatenate([np.ravel(img.data.parts[p]) for p in ("left", "right")])
    else:
        values = np.asarray(img.dataobj if isinstance(img, nib.Cifti2Image) else img.get_fdata())
    np.save(out, np.ravel(values))


# ------------------------------------------------------------------ child
def _child(tool: str, data: dict, n_perm: int, out: str, tfce: bool) -> None:
    import warnings

    import pandas as pd

    warnings.simplefilter("ignore")
    case = data.get("case", "volume")
    design = pd.read_csv(data["design"], sep="\t")
    kwargs = dict(design_matrix=design, n_perm=n_perm, random_state=0, n_jobs=2)
    if case == "volume":
        kwargs["mask"] = data["mask"]
    from nilearn.glm.second_level import non_parametric_inference  # imports are not timed

    maps = _surface_inputs(data) if case == "surface" else data["maps"]
    if tool == "nilearn":
        if case == "cifti":  # nilearn reads no CIFTI: its permuted_ols on the matrix, read beforehand
            import nibabel as nib
            from nilearn.mass_univariate import permuted_ols

            Y = np.stack([np.asarray(nib.load(p).dataobj, dtype=np.float64)[0] for p in maps])
            t0 = time.perf_counter()
            img = permuted_ols(np.ones((len(maps), 1)), Y, n_perm=n_perm, random_state=0, n_jobs=2,
                               two_sided_test=False, output_type="dict")["logp_max_t"]
        else:  # nilearn has no surface TFCE: max-T
            t0 = time.perf_counter()
            img = non_parametric_inference(maps, **kwargs, tfce=tfce and case == "volume")
    else:
        from distributed import Client, LocalCluster

        import daskglm.group  # noqa: F401

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster):
            t0 = time.perf_counter()  # the cluster start-up is not the computation
            img = daskglm.non_parametric_inference(maps, **kwargs, tfce=tfce)
            wall = time.perf_counter() - t0  # includes the workers' imports on their first tasks
            t1 = time.perf_counter()
            daskglm.non_parametric_inference(maps, **kwargs, tfce=tfce)
            warm = time.perf_counter() - t1
        _save(img["logp_max_t"] if isinstance(img, dict) else img, out)
        print(json.dumps({"wall": wall, "warm": warm}))
        return
    wall = time.perf_counter() - t0
    _save(img["logp_max_t"] if isinstance(img, dict) else img, out)
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


def run_tool(tool: str, data_json: str, n_perm: int, out: str, tfce: bool = False) -> dict:
    """Run one tool in a child process; wall (inside the child) and peak tree RSS."""
    import psutil

    cmd = [sys.executable, __file__, "--child", tool, "--data", data_json, "--n-perm", str(n_perm), "--out", out]
    cmd += ["--tfce"] if tfce else []
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
    parser.add_argument("--n-perm", type=int, default=None, help="default: 10,000 (volume), 1,000 (others)")
    parser.add_argument("--small", action="store_true",
                        help="volume: 40x48x40 grid, 30 subjects, 1000 flips; surface/cifti: 20 subjects, 50 flips")
    parser.add_argument("--case", choices=["volume", "surface", "cifti"], default="volume",
                        help="volume maps (default), fsaverage5 surfaces, or fsLR-91k-sized CIFTI maps")
    parser.add_argument("--tfce", action="store_true", help="TFCE too (daskglm on the mesh for --case surface)")
    parser.add_argument("--only", choices=["daskglm", "nilearn"])
    parser.add_argument("--workdir", help="keep the generated data here (default: a temporary directory)")
    parser.add_argument("--child", choices=["daskglm", "nilearn"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, json.loads(Path(args.data).read_text()), args.n_perm, args.out, args.tfce)
        return 0
    if args.n_perm is None:
        args.n_perm = 10000 if args.case == "volume" else 1000
    if args.small and args.case == "volume":
        args.shape, args.subjects, args.n_perm = [40, 48, 40], 30, 1000
    elif args.small:
        args.subjects, args.n_perm = 20, 50
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        t0 = time.perf_counter()
        if args.case == "surface":
            data = generate_surface(work / "maps", args.subjects)
            what = "fsaverage5 maps (both hemispheres)"
        elif args.case == "cifti":
            data = generate_cifti(work / "maps", args.subjects)
            what = "CIFTI dense scalar maps"
        else:
            data = generate(work / "maps", tuple(args.shape), args.subjects)
            what = f"maps of {tuple(args.shape)}"
        data_json = work / "data.json"
        data_json.write_text(json.dumps(data))
        import os

        print(f"{args.subjects} {what} ({data['n_voxels']:,} elements), {args.n_perm} sign flips"
              f"{', TFCE' if args.tfce else ''}; data generated in {time.perf_counter() - t0:.1f} s; "
              f"load average {os.getloadavg()}")
        results = {}
        for tool in ("daskglm", "nilearn"):
            if args.only and tool != args.only:
                continue
            results[tool] = run_tool(tool, str(data_json), args.n_perm, str(work / f"{tool}_logp.npy"), args.tfce)
            r = results[tool]
            warm = f", second call {r['warm']:.1f} s" if "warm" in r else ""
            print(f"{tool:8s} wall {r['wall']:8.1f} s{warm}  (child process {r['total']:7.1f} s)  "
                  f"peak RSS {r['peak_rss'] / 2**20:8.0f} MiB")
        if len(results) == 2:
            d, n = results["daskglm"], results["nilearn"]
            extra = " (daskglm also computed TFCE on the mesh; nilearn max-T only)" if args.case == "surface" \
                and args.tfce else ""
            print(f"ratio nilearn/daskglm: wall {n['wall'] / d['wall']:.1f}x, "
                  f"peak RSS {n['peak_rss'] / d['peak_rss']:.2f}x{extra}")
            a = np.load(work / "daskglm_logp.npy")
            b = np.load(work / "nilearn_logp.npy")
            print(f"max |Δ -log10 p_FWE (max-T)| = {np.max(np.abs(a - b)):.3g}")
        print(f"load average {os.getloadavg()} (2 cores shared with other jobs: timings are noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
