"""Many subjects in one graph: fit_subjects and the fit-subjects CLI subcommand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from daskglm import FirstLevelModel
from daskglm.cli.parser import add_fit_subjects as add_subcommand
from daskglm.studies.subjects import SubjectsError, fit_subjects, open_subject


@pytest.fixture(scope="module", autouse=True)
def _deterministic_blas():
    with threadpool_limits(1):
        yield


def _spec(data, runs=None):
    return {"run_imgs": runs or [data["func1"], data["func2"]],
            "design_matrices": [data["design_matrix1"], data["design_matrix2"]]}


@pytest.fixture(scope="module")
def corrupt_run(fiac_small, tmp_path_factory) -> str:
    """A .nii.gz whose header reads fine but whose data stream is cut: fails while computing."""
    raw = Path(fiac_small["func2"]).read_bytes()
    path = tmp_path_factory.mktemp("corrupt") / "cut_bold.nii.gz"
    path.write_bytes(raw[: len(raw) // 2])
    return str(path)


def _z(model):
    return np.asarray(model.compute_contrast([1, 0, 0, 0]).dataobj)


def test_failure_in_one_subject_keeps_the_others(fiac_small, corrupt_run, tmp_path):
    store = tmp_path / "study.zarr"
    subjects = {
        "01": _spec(fiac_small),
        "sub-02": _spec(fiac_small, [fiac_small["func2"], fiac_small["func1"]]),
        "bad": _spec(fiac_small, [fiac_small["func1"], corrupt_run]),       # fails in compute
        "missing": _spec(fiac_small, [fiac_small["func1"], str(tmp_path / "nope.nii.gz")]),  # at build
    }
    result = fit_subjects(subjects, store, model_params={"mask_img": fiac_small["mask"]}, progress=False)
    assert set(result.completed) == {"01", "02"}
    assert set(result.failed) == {"bad", "missing"}
    assert "truncated" in result.failed["bad"] or "corrupt" in result.failed["bad"]
    assert "nope.nii.gz" in result.failed["missing"] and "\n" not in result.failed["missing"]
    with pytest.raises(SubjectsError, match="2 subject"):
        result.raise_for_errors()
    direct = FirstLevelModel(mask_img=fiac_small["mask"]).fit(**_spec(fiac_small))
    np.testing.assert_array_equal(_z(open_subject(store, "01")), _z(direct))
    assert (store / "sub-02" / "zarr.json").exists() and not (store / "sub-bad" / "zarr.json").exists()
    index = json.loads((store / "zarr.json").read_text())["attributes"]["subjects"]
    assert index["01"]["status"] == "complete" and index["bad"]["status"] == "failed"

    # fix the bad subject and resume: the good subjects are not refitted
    subjects["bad"] = _spec(fiac_small)
    del subjects["missing"]
    again = fit_subjects(subjects, store, model=FirstLevelModel(mask_img=fiac_small["mask"]),
                         resume=True, progress=False)
    assert again.ok, again.failed
    assert again.completed["01"].reused == [0, 1] and again.completed["02"].reused == [0, 1]
    assert 1 in again.completed["bad"].written  # (its first run may have been completed already)
    np.testing.assert_array_equal(_z(open_subject(store, "sub-bad")), _z(direct))


def _cli(argv):
    parser = argparse.ArgumentParser(prog="daskglm")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subcommand(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_fit_subjects(fiac_small, corrupt_run, tmp_path, capsys):
    data_dir = Path(fiac_small["func1"]).parent
    spec = {
        "model": {"mask_img": "mask.nii.gz", "noise_model": "ols"},
        "subjects": {
            "01": {"run_imgs": ["run1_bold.nii.gz"], "design_matrices": ["run1_design.npz"]},
            "02": {"run_imgs": [corrupt_run], "design_matrices": ["run2_design.npz"]},
        },
    }
    spec_path = data_dir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    store = tmp_path / "study.zarr"
    assert _cli(["fit-subjects", str(spec_path), str(store), "--no-progress", "--scheduler", "synchronous"]) == 1
    out, err = capsys.readouterr()
    assert "sub-01: ok" in out
    errors = [line for line in err.splitlines() if line.startswith("daskglm fit-subjects: error:")]
    assert len(errors) == 1 and "sub-02" in errors[0]
    assert open_subject(store, "01").noise_model == "ols"
    # a bad spec file is one line on stderr, exit status 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert _cli(["fit-subjects", str(bad), str(store)]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_fit_subjects_storage_options_are_json_values(tmp_path, monkeypatch):
    """``--storage-option`` values parse as JSON when they do (``anon=false`` → False), as in ``daskglm bids``."""
    import daskglm.cli.commands as commands
    from daskglm.cli import main
    from daskglm.studies.subjects import SubjectsResult

    seen = {}

    def fake_fit_subjects(subjects, store, **kwargs):
        seen.update(kwargs["storage_options"])
        return SubjectsResult(store=str(store))

    monkeypatch.setattr(commands, "fit_subjects", fake_fit_subjects)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"subjects": {}, "storage_options": {"key": "k", "anon": True}}))
    assert main(["fit-subjects", str(spec), "s3://bucket/study.zarr", "--no-progress", "--storage-option",
                 "anon=false", "--storage-option", "endpoint_url=http://127.0.0.1:9", "--storage-option",
                 "config_kwargs={\"retries\": 2}"]) == 0
    assert seen == {"key": "k", "anon": False, "endpoint_url": "http://127.0.0.1:9",
                    "config_kwargs": {"retries": 2}}
    assert main(["fit-subjects", str(spec), "s3://bucket/study.zarr", "--storage-option", "novalue"]) != 0


# ------------------------------------------------------------ schedule "subjects": one task per subject
def test_one_task_per_subject_on_a_cluster(fiac_small, corrupt_run, tmp_path):
    """Each subject is built and fitted inside one task; failures stay apart; resume reuses runs."""
    distributed = pytest.importorskip("distributed")
    store = tmp_path / "tasks.zarr"
    subjects = {
        "01": _spec(fiac_small),
        "bad": _spec(fiac_small, [fiac_small["func1"], corrupt_run]),       # a truncated run
        "missing": _spec(fiac_small, [fiac_small["func1"], str(tmp_path / "nope.nii.gz")]),
    }
    params = {"mask_img": fiac_small["mask"]}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        result = fit_subjects(subjects, store, model_params=params, progress=False, schedule="subjects")
        keys = {str(k) for k in client.run_on_scheduler(
            lambda dask_scheduler: list(dask_scheduler.task_prefixes))}
        assert set(result.completed) == {"01"} and set(result.failed) == {"bad", "missing"}
        assert "nope.nii.gz" in result.failed["missing"] and "\n" not in result.failed["missing"]
        assert result.status["bad"]["status"] == "failed" and "truncated" in result.status["bad"]["error"]
        assert result.status["01"]["voxels"] > 0 and result.status["01"]["wall_s"] > 0
        subjects["bad"] = _spec(fiac_small)
        del subjects["missing"]
        again = fit_subjects(subjects, store, model_params=params, progress=False, resume=True,
                             schedule="subjects")
    assert again.ok, again.failed
    assert "fit-subject" in keys and "stream-stats" not in keys  # the runs were not tasks of their own
    assert again.completed["01"].reused == [0, 1] and again.completed["01"].written == []
    assert 1 in again.completed["bad"].written
    direct = FirstLevelModel(mask_img=fiac_small["mask"]).fit(**_spec(fiac_small))
    np.testing.assert_array_equal(_z(open_subject(store, "01")), _z(direct))
    np.testing.assert_array_equal(_z(open_subject(store, "bad")), _z(direct))
    index = json.loads((store / "zarr.json").read_text())["attributes"]["subjects"]
    assert index["bad"]["status"] == "complete" and index["missing"]["status"] == "failed"


def test_schedule_choice():
    from daskglm.studies.schedule import resolve_schedule

    assert resolve_schedule("auto", 10, None) == "graph"  # no distributed client: local schedulers
    assert resolve_schedule("subjects", 10, None) == "graph"

    class Client:
        def nthreads(self):
            return {"w1": 2, "w2": 2}

    assert resolve_schedule("auto", 3, Client()) == "graph"  # fewer subjects than threads
    assert resolve_schedule("auto", 4, Client()) == "subjects"
    assert resolve_schedule("graph", 40, Client()) == "graph"
    with pytest.raises(ValueError, match="schedule must be one of"):
        resolve_schedule("fastest", 4, Client())


def test_synchronous_tasks_restore_the_scheduler_when_the_last_task_leaves():
    import threading

    import dask

    from daskglm.studies.schedule import synchronous_tasks

    before = dask.config.get("scheduler", None)
    inside, release = threading.Event(), threading.Event()

    def task():
        with synchronous_tasks:
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=task)
    thread.start()
    inside.wait(5)
    with synchronous_tasks:  # a second task enters, then leaves first
        assert dask.config.get("scheduler") == "synchronous"
    assert dask.config.get("scheduler") == "synchronous"  # the other task still runs
    release.set()
    thread.join()
    assert dask.config.get("scheduler", None) == before
