"""Concurrent writers of one store, with real processes.

- several processes ``to_zarr(p, overwrite=True)`` at the same moment: every
  one succeeds, the store then holds exactly one writer's complete fit, and
  nothing another writer needed was deleted;
- two ``overwrite=False`` writers (threads) racing for a new path: one wins,
  the other gets ``FileExistsError``, the store is whole;
- a commit never collects the groups of a live writer that has not committed
  yet (its claim protects them);
- a writer killed while holding the commit lock does not block the next
  writer (the kernel releases ``flock``), and its leftover groups are
  collected by the next commit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm import FirstLevelModel, open_model
from daskglm.store.location import Location
from daskglm.store.lock import WRITERS_DIR, commit_lock, group_stamp
from tests.conftest import sigkilled_at_exit


def dataset(seed):
    """A small in-memory run and design; the writer processes import this function."""
    rng = np.random.default_rng(seed)
    n, p = 40 + 10 * seed, 4 + seed
    X = pd.DataFrame(np.c_[rng.normal(size=(n, p - 1)), np.ones(n)],
                     columns=[f"c{i}" for i in range(p - 1)] + ["constant"])
    bold = 100 + X.to_numpy() @ rng.normal(size=(p, 60)) + rng.normal(size=(n, 60))
    return nib.Nifti1Image(bold.T.reshape(5, 4, 3, n), np.eye(4)), X


WRITER = textwrap.dedent(
    """
    import sys, time, warnings
    from tests.store.test_concurrency import dataset
    warnings.simplefilter("ignore")
    from daskglm import FirstLevelModel
    store, seed, overwrite, barrier = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
    img, X = dataset(seed)
    model = FirstLevelModel(mask_img=False, noise_model="ols").fit(img, design_matrices=X).persist()
    open(f"{barrier}.ready{seed}", "w").close()
    while not __import__("os").path.exists(barrier):
        time.sleep(0.01)
    try:
        model.to_zarr(store, overwrite=overwrite)
        print("ok")
    except FileExistsError as err:
        print("exists", err)
    """
)

HOLDER = textwrap.dedent(
    """
    import sys, time
    from daskglm.store.location import Location
    from daskglm.store.lock import commit_lock, write_claim
    loc = Location(sys.argv[1])
    write_claim(loc, "deadbeefdeadbeef", [])
    with commit_lock(loc):
        print("locked", flush=True)
        time.sleep(600)
    """
)


def _z(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(model.compute_contrast("c0").get_fdata())


@pytest.fixture(scope="module")
def references() -> dict:
    out = {}
    for seed in (1, 2, 3):
        img, X = dataset(seed)
        out[seed] = _z(FirstLevelModel(mask_img=False, noise_model="ols").fit(img, design_matrices=X))
    return out


def _race(tmp_path: Path, store: Path, seeds, overwrite: bool) -> list[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    barrier = tmp_path / f"go-{time.monotonic_ns()}"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, str(script), str(store), str(s), "1" if overwrite else "0",
                               str(barrier)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for s in seeds]
    deadline = time.monotonic() + 120
    while not all(Path(f"{barrier}.ready{s}").exists() for s in seeds):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.stderr.read().decode()[-2000:] for p in procs if p.poll() is not None]
        time.sleep(0.02)
    barrier.touch()
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
        outputs.append(out.decode().strip())
    return outputs


def _holds_one_of(store: Path, references: dict, seeds) -> int:
    z = _z(open_model(store))
    matches = [s for s in seeds if z.shape == references[s].shape and np.allclose(z, references[s])]
    assert len(matches) == 1, "the store holds no writer's fit (or a mix)"
    return matches[0]


def _no_garbage(store: Path) -> None:
    names = [p.name for p in store.iterdir() if p.is_dir() and group_stamp(p.name)]
    assert len(names) == 2, f"leftover groups: {names}"  # one run group and the shared group


def test_simultaneous_overwrites_leave_one_complete_fit(references, tmp_path):
    store = tmp_path / "fit.zarr"
    outputs = _race(tmp_path, store, (1, 2, 3), overwrite=True)
    assert outputs == ["ok"] * 3
    _holds_one_of(store, references, (1, 2, 3))
    _no_garbage(store)


def test_racing_creators_one_wins(references, tmp_path):
    """Two ``overwrite=False`` writers (threads: each holds its own lock descriptor) race for a path."""
    import threading

    store = tmp_path / "fit.zarr"
    models = {s: FirstLevelModel(mask_img=False, noise_model="ols").fit(
        dataset(s)[0], design_matrices=dataset(s)[1]).persist() for s in (1, 2)}
    barrier, outcome = threading.Barrier(2), {}

    def write(seed):
        barrier.wait()
        try:
            models[seed].to_zarr(store)
            outcome[seed] = "ok"
        except FileExistsError:
            outcome[seed] = "exists"

    threads = [threading.Thread(target=write, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcome.values()) == ["exists", "ok"], outcome
    winner = [s for s, o in outcome.items() if o == "ok"][0]
    assert _holds_one_of(store, references, (1, 2)) == winner
    _no_garbage(store)


def test_commit_keeps_groups_of_a_live_writer(references, tmp_path):
    store = tmp_path / "fit.zarr"
    img, X = dataset(1)
    FirstLevelModel(mask_img=False, noise_model="ols").fit(img, design_matrices=X).to_zarr(store)
    img2, X2 = dataset(2)
    pending = FirstLevelModel(mask_img=False, noise_model="ols").fit(
        img2, design_matrices=X2).to_zarr(store, overwrite=True, compute=False)  # claimed, not written
    img3, X3 = dataset(3)
    FirstLevelModel(mask_img=False, noise_model="ols").fit(img3, design_matrices=X3).to_zarr(
        store, overwrite=True)  # commits while the first writer is still working
    assert _holds_one_of(store, references, (1, 2, 3)) == 3
    pending.compute()  # would fail ("vanished") had the commit collected its groups
    assert _holds_one_of(store, references, (1, 2, 3)) == 2
    _no_garbage(store)
    assert not list((store / WRITERS_DIR).iterdir())


def test_killed_lock_holder_does_not_block(references, tmp_path):
    store = tmp_path / "fit.zarr"
    img, X = dataset(1)
    FirstLevelModel(mask_img=False, noise_model="ols").fit(img, design_matrices=X).to_zarr(store)
    (store / ".tmp-run0-deadbeefdeadbeef").mkdir()  # the killed writer's half-written group
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2]),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(script), str(store)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    with sigkilled_at_exit(proc):  # killed while it holds the lock
        assert proc.stdout.readline().decode().strip() == "locked", proc.stderr.read().decode()
        loc = Location(store)
        with pytest.raises(Exception, match="commit lock"):
            with commit_lock(loc, timeout=0.3):
                pass
    start = time.monotonic()
    img2, X2 = dataset(2)
    FirstLevelModel(mask_img=False, noise_model="ols").fit(img2, design_matrices=X2).to_zarr(
        store, overwrite=True)
    assert time.monotonic() - start < 30
    assert _holds_one_of(store, references, (1, 2)) == 2
    assert not (store / ".tmp-run0-deadbeefdeadbeef").exists(), "the dead writer's group was kept"
    _no_garbage(store)
