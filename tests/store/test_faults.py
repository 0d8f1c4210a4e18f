"""A good store survives every failed, refused or interrupted write that targets it.

Fault injection:

- in-process: an exception raised while a run chunk is read during
  ``to_zarr(overwrite=True)``, and one raised while Zarr writes a data chunk;
- out-of-process: a subprocess writing ``to_zarr(overwrite=True)`` over the
  store is SIGKILLed while it reads the data, while Zarr writes chunks, and
  during the final swap.

Each time the store at the path must open with ``open_model`` and hold either
the old fit (always, for failures before the swap) or the complete new one,
never a mix or nothing.  Also: ``overwrite=False`` refuses, a failed fit never
touches the store, and reading a store does not change it.  The store of the
old fit is ``good_store`` (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from daskglm import FirstLevelModel, open_model
from daskglm.io.nifti import FileRunSource
from tests._unequal import _root, _z
from tests.conftest import _design, _fit, sigkilled_at_exit

CONTRAST = "SSt-SSp"  # a bare column name: nilearn's semantics select that column


def _maps(model: FirstLevelModel) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = model.compute_contrast(CONTRAST, output_type="all")
    return {k: np.asarray(v.dataobj) for k, v in images.items() if k in ("effect_size", "z_score")}


@pytest.fixture(scope="module")
def reference(sdata) -> dict:
    """Maps of the 'old' fit (run 1) and of the 'new' fit (run 2), fitted in memory."""
    return {"old": _maps(_fit(sdata, 1)), "new": _maps(_fit(sdata, 2))}


def _store_holds(path: Path, expected: dict[str, np.ndarray]) -> bool:
    maps = _maps(open_model(path))
    return all(np.allclose(maps[k], expected[k], rtol=1e-10, atol=1e-12) for k in expected)


def _assert_old_store_intact(path: Path, reference: dict) -> None:
    assert path.is_dir(), "the existing store disappeared"
    assert _store_holds(path, reference["old"]), "the existing store no longer holds the old fit"


def test_reference_fits_differ(reference):
    """Control: the old and new fits are distinguishable, so the checks below can fail."""
    assert not np.allclose(reference["old"]["z_score"], reference["new"]["z_score"])


# -------------------------------------------------------------- overwrite
def test_overwrite_false_refuses(sdata, good_store, reference):
    model = _fit(sdata, 2)
    with pytest.raises(FileExistsError) as info:
        model.to_zarr(good_store)
    assert str(good_store) in str(info.value)
    assert "overwrite=True" in str(info.value)
    with pytest.raises(FileExistsError):
        model.to_zarr(good_store, overwrite=False)
    _assert_old_store_intact(good_store, reference)


def test_overwrite_true_replaces_completely(sdata, good_store, reference):
    before = set(os.listdir(good_store.parent))
    _fit(sdata, 2).to_zarr(good_store, overwrite=True)
    assert _store_holds(good_store, reference["new"])
    assert set(os.listdir(good_store.parent)) == before, "temporary directories were left behind"


def test_failed_fit_never_touches_store(sdata, good_store, reference, tmp_path):
    raw = Path(sdata["func2"]).read_bytes()
    truncated = tmp_path / "truncated.nii"
    truncated.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ValueError, match="truncated"):
        FirstLevelModel(mask_img=sdata["mask"]).fit(str(truncated), design_matrices=_design(sdata, 2)) \
            .to_zarr(good_store, overwrite=True)
    _assert_old_store_intact(good_store, reference)


# ------------------------------------------------- in-process fault injection
class InjectedFault(OSError):
    pass


def test_exception_in_chunk_read_during_write(sdata, good_store, reference, monkeypatch):
    model = _fit(sdata, 2)  # lazy: the data are read while the store is written
    before = set(os.listdir(good_store.parent))

    def failing_read(self, t0, t1):
        raise InjectedFault(f"injected read failure at volumes {t0}..{t1}")

    monkeypatch.setattr(FileRunSource, "read", failing_read)
    monkeypatch.setattr(FileRunSource, "iter_chunks", lambda self, chunk: iter([failing_read(self, 0, chunk)]))
    with pytest.raises(InjectedFault, match="injected read failure"):
        model.to_zarr(good_store, overwrite=True)
    monkeypatch.undo()
    _assert_old_store_intact(good_store, reference)
    assert set(os.listdir(good_store.parent)) == before, "temporary directories were left behind"


def test_exception_in_zarr_chunk_write(sdata, good_store, reference, monkeypatch):
    from zarr.storage import LocalStore

    model = _fit(sdata, 2)
    before = set(os.listdir(good_store.parent))
    original_set = LocalStore.set
    written = []

    async def failing_set(self, key, value, *args, **kwargs):
        if "/c" in key or key.startswith("c/"):  # a data chunk, not metadata
            written.append(key)
            if len(written) > 2:
                raise InjectedFault(f"injected write failure on chunk {key}")
        return await original_set(self, key, value, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "set", failing_set)
    with pytest.raises(InjectedFault, match="injected write failure"):
        model.to_zarr(good_store, overwrite=True)
    monkeypatch.undo()
    _assert_old_store_intact(good_store, reference)
    assert set(os.listdir(good_store.parent)) == before, "temporary directories were left behind"


# ------------------------------------------------------- SIGKILL mid-write
WRITER = textwrap.dedent(
    """
    import os, signal, sys, time, warnings
    import numpy as np, pandas as pd
    warnings.simplefilter("ignore")
    from daskglm import FirstLevelModel

    run, mask, design, store, flag, mode = sys.argv[1:]
    target = os.path.abspath(store)

    def signal_and_hang(what):
        with open(flag, "w") as fh:
            fh.write(what)
        time.sleep(120)  # the parent SIGKILLs us here

    if mode == "chunks":
        from zarr.storage import LocalStore
        original_set = LocalStore.set
        count = [0]
        async def slow_set(self, key, value, *args, **kwargs):
            result = await original_set(self, key, value, *args, **kwargs)
            if "/c" in key or key.startswith("c/"):
                count[0] += 1
                if count[0] == 3:
                    signal_and_hang("writing chunks")
            return result
        LocalStore.set = slow_set
    elif mode.startswith("swap"):
        # die around the filesystem moves inside the store: "swap-after-1" right after
        # the first one, "swap-before-commit"/"swap-after-commit" around the move that
        # replaces the root metadata (zarr.json) or the store itself
        moves = [0]
        def die():
            with open(flag, "w") as fh:
                fh.write("swapping")
            os.kill(os.getpid(), signal.SIGKILL)
        def inside(path):
            path = os.path.abspath(os.fspath(path))
            return path == target or path.startswith(target + os.sep)
        def is_commit(dst):
            dst = os.path.abspath(os.fspath(dst))
            return dst in (target, os.path.join(target, "zarr.json"))
        def dying(original):
            def move(src, dst, *args, **kwargs):
                touches = inside(src) or inside(dst)
                if touches:
                    moves[0] += 1
                if mode == "swap-before-commit" and is_commit(dst):
                    die()
                result = original(src, dst, *args, **kwargs)
                if mode == "swap-after-1" and touches and moves[0] == 1:
                    die()
                if mode == "swap-after-commit" and is_commit(dst):
                    die()
                return result
            return move
        os.rename = dying(os.rename)
        os.replace = dying(os.replace)

    npz = np.load(design)
    X = pd.DataFrame(npz["X"], columns=[str(c) for c in npz["columns"]])
    model = FirstLevelModel(mask_img=mask, noise_model="ols").fit(run, design_matrices=X)
    model.to_zarr(store, overwrite=True)
    with open(flag, "w") as fh:
        fh.write("finished")
    """
)


def _kill_writer_midway(sdata, store: Path, tmp_path: Path, mode: str) -> str:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    flag = tmp_path / f"flag-{mode}"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, str(script), sdata["func2"], sdata["mask"], sdata["design_matrix2"],
         str(store), str(flag), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    with sigkilled_at_exit(proc):  # killed at the fault point (if it has not finished)
        deadline = time.monotonic() + 60
        while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        state = flag.read_text() if flag.exists() else "no flag"
    if state == "no flag":
        pytest.fail(f"the writer never reached the fault point: {proc.stderr.read().decode()[-2000:]}")
    assert proc.returncode == -signal.SIGKILL or state == "finished", proc.stderr.read().decode()[-2000:]
    return state


def test_sigkill_during_write_keeps_old_store(sdata, good_store, reference, tmp_path):
    state = _kill_writer_midway(sdata, good_store, tmp_path, "chunks")
    assert state == "writing chunks"
    _assert_old_store_intact(good_store, reference)
    # a stale temporary from the killed writer must not block the next write
    _fit(sdata, 2).to_zarr(good_store, overwrite=True)
    assert _store_holds(good_store, reference["new"])


@pytest.mark.parametrize("mode", ["swap-after-1", "swap-after-commit"])
def test_sigkill_during_swap_leaves_old_or_new_store(sdata, good_store, reference, tmp_path, mode):
    """All or nothing: killed while swapping, the path holds the old or the new fit, complete."""
    state = _kill_writer_midway(sdata, good_store, tmp_path, mode)
    assert state == "swapping", "the writer never reached the swap"
    assert good_store.is_dir(), "killed mid-swap, the store path holds nothing (old store lost)"
    expected = "new" if mode == "swap-after-commit" else "old"
    assert _store_holds(good_store, reference[expected]), f"the store should hold the {expected} fit"


def test_reading_a_store_does_not_change_it(good_store, reference):
    def snapshot():
        return {
            str(p.relative_to(good_store)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in good_store.rglob("*")
            if p.is_file()
        }

    before = snapshot()
    assert _store_holds(good_store, reference["old"])
    assert snapshot() == before
    shutil.rmtree(good_store)


# ----------------------------------------------- cleanup after a commit
def test_failed_cleanup_after_commit_keeps_the_new_fit(unequal, store, monkeypatch):
    import daskglm.store.zarr as zarr_store

    model = FirstLevelModel(mask_img=unequal["mask"], noise_model="ar1").fit(
        unequal["runs"], design_matrices=unequal["designs"])

    def failing_gc(*args, **kwargs):
        raise OSError("permission denied while removing an old group")

    monkeypatch.setattr(zarr_store, "collect_garbage", failing_gc)
    with pytest.warns(RuntimeWarning, match="was committed, but removing its unreferenced groups failed"):
        model.to_zarr(store, overwrite=True)
    reread = open_model(store)
    assert reread.noise_model == "ar1"
    for name in _root(store)["attributes"]["daskglm_runs"]:
        assert (store / name).is_dir(), name
    np.testing.assert_allclose(_z(reread), _z(model), atol=1e-10)

    # whatever fails once the root is written, the groups it references stay
    def failing_after_commit(*args, **kwargs):
        raise RuntimeError("interrupted after the commit")

    monkeypatch.setattr(zarr_store, "_after_commit", failing_after_commit)
    ols = FirstLevelModel(mask_img=unequal["mask"], noise_model="ols").fit(
        unequal["runs"], design_matrices=unequal["designs"])
    with pytest.raises(RuntimeError, match="interrupted after the commit"):
        ols.to_zarr(store, overwrite=True)
    assert open_model(store).noise_model == "ols"
    np.testing.assert_allclose(_z(open_model(store)), _z(ols), atol=1e-10)
