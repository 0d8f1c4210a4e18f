"""Issue 11's "What was found" list, one test (or more) per item, as a fault-injection suite.

1. unequal runs through a store (against nilearn 0.14.1);  2. concurrent writers
(``tests/test_store_concurrency.py``);  3. corrupt or missing chunks;  4. tampered
metadata (and ``tests/test_store_fuzz.py``);  5. code in contrast strings
(and ``tests/test_contrast_parser.py``);  6. CLI on a read-only or full output;
7. non-ASCII contrast names;  8. t_r in milliseconds and one-volume runs.
Old-format stores and ``daskglm migrate`` are here too.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm import FirstLevelModel, open_model
from daskglm.cli import main
from daskglm.errors import ContrastError, DesignError, StoreError

SHAPE = (6, 5, 4)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
T_R = 2.0


def _events(conditions, n_scans, seed):
    onsets = np.arange(4, n_scans * T_R - 20, 12.0)
    return pd.DataFrame({"onset": onsets, "duration": 4.0,
                         "trial_type": [conditions[i % len(conditions)] for i in range(len(onsets))]})


@pytest.fixture(scope="module")
def unequal(tmp_path_factory) -> dict:
    """Two runs of 60 and 80 scans whose event designs have 2 and 3 conditions (unequal widths)."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    rng = np.random.default_rng(11)
    runs, designs = [], []
    for n, conds, seed in ((60, ["a", "b"], 1), (80, ["a", "b", "c"], 2)):
        ev = _events(conds, n, seed)
        X = make_first_level_design_matrix(np.arange(n) * T_R, ev, hrf_model="glover",
                                           drift_model="cosine", high_pass=0.01)
        signal = X.to_numpy() @ rng.normal(0, 2, (X.shape[1], int(np.prod(SHAPE))))
        noise = rng.normal(0, 1, (n, int(np.prod(SHAPE))))
        bold = 100 + signal + noise
        runs.append(nib.Nifti1Image(bold.T.reshape(*SHAPE, n).astype(np.float64), AFFINE))
        designs.append(X)
    mask = nib.Nifti1Image(np.ones(SHAPE, dtype=np.uint8), AFFINE)
    return {"runs": runs, "designs": designs, "mask": mask, "root": tmp_path_factory.mktemp("unequal")}


def _z(model, contrast="a - b"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(model.compute_contrast(contrast).get_fdata())


# ------------------------------------------------------- 1. unequal runs
def test_unequal_runs_through_a_store_equal_nilearn(unequal):
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    assert unequal["designs"][0].shape[1] != unequal["designs"][1].shape[1]
    reference = _z(NilearnModel(mask_img=unequal["mask"], minimize_memory=True).fit(
        unequal["runs"], design_matrices=unequal["designs"]))
    model = FirstLevelModel(mask_img=unequal["mask"]).fit(unequal["runs"],
                                                          design_matrices=unequal["designs"])
    store = unequal["root"] / "fit.zarr"
    model.to_zarr(store)  # not persisted: the model reads its fit back from the store
    np.testing.assert_allclose(_z(model), reference, atol=1e-8)
    reopened = open_model(store)
    assert [d.shape for d in reopened.design_matrices_] == [d.shape for d in unequal["designs"]]
    np.testing.assert_allclose(_z(reopened), reference, atol=1e-8)
    # resume: both runs reused, same maps
    summary = FirstLevelModel(mask_img=unequal["mask"]).fit(
        unequal["runs"], design_matrices=unequal["designs"]).to_zarr(store, resume=True)
    assert summary.reused == [0, 1] and summary.written == []
    np.testing.assert_allclose(_z(open_model(store)), reference, atol=1e-8)


def test_unequal_runs_persisted_model_to_store(unequal, tmp_path):
    model = FirstLevelModel(mask_img=unequal["mask"], noise_model="ols").fit(
        unequal["runs"], design_matrices=unequal["designs"]).persist()
    model.to_zarr(tmp_path / "fit.zarr")
    np.testing.assert_allclose(_z(open_model(tmp_path / "fit.zarr")), _z(model), atol=1e-10)


# -------------------------------------------------------------- stores
@pytest.fixture(scope="module")
def pristine(unequal) -> Path:
    path = unequal["root"] / "pristine.zarr"
    FirstLevelModel(mask_img=unequal["mask"], noise_model="ols").fit(
        unequal["runs"], design_matrices=unequal["designs"]).to_zarr(path)
    return path


@pytest.fixture
def store(pristine, tmp_path) -> Path:
    """A fresh copy of a good two-run OLS store (runs of 60 and 80 scans)."""
    path = tmp_path / "fit.zarr"
    shutil.copytree(pristine, path)
    return path


def _root(store: Path) -> dict:
    return json.loads((store / "zarr.json").read_text())


def _run_group(store: Path, i: int = 0) -> Path:
    return store / _root(store)["attributes"]["daskglm_runs"][i]


def _chunks(array_dir: Path) -> list[Path]:
    return sorted(p for p in (array_dir / "c").rglob("*") if p.is_file())


# ------------------------------------------------------------ 3. integrity
@pytest.mark.parametrize("array", ["beta", "dispersion", "cov_index", "design"])
def test_deleted_chunk_is_an_error(store, array):
    chunk = _chunks(_run_group(store) / array)[0]
    chunk.unlink()
    with pytest.raises(StoreError, match=f"{array}.*missing") as info:
        _z(open_model(store))
    assert str(store) in str(info.value)


def test_deleted_mask_chunk_is_an_error(store):
    shared = store / _root(store)["attributes"]["daskglm_shared"]
    _chunks(shared / "mask")[0].unlink()
    with pytest.raises(StoreError, match="mask"):
        open_model(store)


@pytest.mark.parametrize("array", ["beta", "dispersion", "cov_index", "cov_table"])
def test_flipped_bytes_are_an_error_naming_array_and_chunk(store, array):
    chunk = _chunks(_run_group(store) / array)[0]
    data = bytearray(chunk.read_bytes())
    for i in range(min(8, len(data))):
        data[len(data) // 2 - 4 + i] ^= 0x5A
    chunk.write_bytes(bytes(data))
    with pytest.raises(StoreError) as info:
        _z(open_model(store))
    message = str(info.value)
    assert array in message and "chunk c/" in message and "corrupt" in message


def test_out_of_range_cov_index_with_valid_checksum(unequal, tmp_path):
    """A cov_index rewritten with a valid checksum but an impossible row is still an error."""
    import zarr

    path = tmp_path / "fit.zarr"
    FirstLevelModel(mask_img=unequal["mask"]).fit(unequal["runs"], design_matrices=unequal["designs"]) \
        .to_zarr(path)
    array = zarr.open_array(str(_run_group(path) / "cov_index"), mode="r+", zarr_format=3)
    array[0] = 30000  # int16; the table has 199 rows
    with pytest.raises(StoreError, match=r"cov_index.*outside"):
        _z(open_model(path))


def test_chunk_deleted_after_open_is_an_error(store):
    model = open_model(store)
    _chunks(_run_group(store, 1) / "beta")[0].unlink()
    with pytest.raises(StoreError, match="beta.*missing"):
        _z(model)


def test_old_format_store_reads_and_migrates(unequal, tmp_path, monkeypatch, capsys):
    import daskglm.store.zarr as zarr_mod

    path = tmp_path / "old.zarr"
    model = FirstLevelModel(mask_img=unequal["mask"], noise_model="ols").fit(
        unequal["runs"], design_matrices=unequal["designs"])
    with monkeypatch.context() as m:  # the format 2 writer: no checksum codec
        m.setattr(zarr_mod, "FORMAT_VERSION", 2)
        m.setattr(zarr_mod, "checksummed_encoding", lambda ds: {})
        model.to_zarr(path)
    assert _root(path)["attributes"]["daskglm_format_version"] == 2
    expected = _z(open_model(path))
    np.testing.assert_allclose(expected, _z(model), atol=1e-10)
    assert main(["migrate", str(path)]) == 0
    assert "from store format 2 to 3" in capsys.readouterr().out
    assert _root(path)["attributes"]["daskglm_format_version"] == 3
    meta = json.loads((_run_group(path) / "beta" / "zarr.json").read_text())
    assert meta["codecs"][-1]["name"] == "crc32c"
    np.testing.assert_allclose(_z(open_model(path)), expected, atol=0)
    assert main(["migrate", str(path)]) == 0
    assert "nothing to do" in capsys.readouterr().out


OLD_STORES = Path(__file__).parent / "fixtures" / "old_stores"


@pytest.mark.parametrize("version", [1, 2])
def test_real_old_stores_read_and_migrate(version, tmp_path, capsys):
    """Stores written by daskglm's own format 1 and 2 writers (tests/fixtures/old_stores)."""
    path = tmp_path / "old.zarr"
    shutil.copytree(OLD_STORES / f"v{version}_store", path)
    expected = np.load(OLD_STORES / f"v{version}.z.npy")
    if version == 1:  # read without validation: only `daskglm migrate` opens it
        with pytest.raises(StoreError, match=r"format 1 store: run `daskglm migrate .*old\.zarr`"):
            open_model(path)
        assert main(["contrast", str(path), "a - b", "-o", str(tmp_path / "out"), "--no-progress"]) == 2
        assert "daskglm migrate" in capsys.readouterr().err
    else:
        np.testing.assert_array_equal(_z(open_model(path)), expected)
    assert main(["migrate", str(path)]) == 0
    assert f"from store format {version} to 3" in capsys.readouterr().out
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith(".")) == sorted(
        [*_root(path)["attributes"]["daskglm_runs"], _root(path)["attributes"]["daskglm_shared"],
         "zarr.json"]), "old arrays or groups were left behind"
    np.testing.assert_array_equal(_z(open_model(path)), expected)
    _chunks(_run_group(path) / "beta")[0].unlink()  # now verified
    with pytest.raises(StoreError, match="missing"):
        _z(open_model(path))


# ----------------------------------------------------- 4. tampered metadata
def _set_root_attr(store: Path, name: str, value) -> None:
    meta = _root(store)
    meta["attributes"][name] = value
    (store / "zarr.json").write_text(json.dumps(meta))


def _set_param(store: Path, name: str, value) -> None:
    params = json.loads(_root(store)["attributes"]["model_params"])
    params[name] = value
    _set_root_attr(store, "model_params", json.dumps(params))


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("noise_model", 5, "noise_model"),
    ("noise_model", "ar99", "noise_model"),
    ("whitening", ["x"], "whitening"),
    ("signal_scaling", "yes", "signal_scaling"),
    ("smoothing_fwhm", -3, "smoothing_fwhm"),
])
def test_tampered_parameters(store, name, value, fragment):
    _set_param(store, name, value)
    start = time.perf_counter()
    with pytest.raises(StoreError, match=fragment) as info:
        open_model(store)
    assert str(store) in str(info.value) and time.perf_counter() - start < 5


def test_short_design_columns(store):
    cols = json.loads(_root(store)["attributes"]["design_columns"])
    cols[1] = cols[1][:-1]
    _set_root_attr(store, "design_columns", json.dumps(cols))
    with pytest.raises(StoreError, match="design_columns"):
        open_model(store)


def test_huge_declared_shape_is_refused_fast(store):
    meta_path = _run_group(store) / "beta" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"] = [10**9, 10**9]
    meta_path.write_text(json.dumps(meta))
    start = time.perf_counter()
    with pytest.raises(StoreError, match="beta"):
        _z(open_model(store))
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("kind", ["absolute", "parent", "nested"])
def test_group_names_must_stay_inside_the_store(pristine, tmp_path, kind):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    shutil.copytree(pristine, a)
    shutil.copytree(pristine, b)
    for path in (b / n for n in _root(b)["attributes"]["daskglm_runs"]):  # b's groups: other names
        path.rename(path.with_name(path.name.replace("run", "run9", 1)))
    meta = _root(b)
    meta["attributes"]["daskglm_runs"] = [n.replace("run", "run9", 1) for n in meta["attributes"]["daskglm_runs"]]
    (b / "zarr.json").write_text(json.dumps(meta))
    open_model(b)  # b is a valid store
    other = _root(b)["attributes"]["daskglm_runs"]
    names = {"absolute": [str(b / n) for n in other], "parent": [f"../b.zarr/{n}" for n in other],
             "nested": [f"x/{n}" for n in other]}[kind]
    _set_root_attr(a, "daskglm_runs", names)
    with pytest.raises(StoreError, match="daskglm_runs"):
        open_model(a)


def test_removed_checksum_codec_is_refused(store):
    meta_path = _run_group(store) / "dispersion" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"] = meta["codecs"][:-1]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="crc32c"):
        open_model(store)


# ------------------------------------------------------ 5. code in contrasts
def test_contrast_strings_execute_nothing(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = open_model(store)
    for expr in ["a.to_csv('x')", "@pd.read_pickle('evil.pkl')", "__import__('os').system('touch y')",
                 "a + b; import os", "a if 1 else b", "[a, b]", "a**2"]:
        with pytest.raises(ContrastError, match="not valid"):
            model.compute_contrast(expr)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_contrasts_file_with_code(store, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "contrasts.json"
    spec.write_text(json.dumps({"evil": "a.to_csv('pwned')"}))
    assert main(["contrast", str(store), "-f", str(spec), "-o", str(tmp_path / "out"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") <= 4 and "not valid" in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()


# ----------------------------------------------------------- 6. CLI outputs
def test_cli_oserror_is_one_line_exit_2(store, tmp_path, capsys, monkeypatch):
    import errno

    import daskglm.io.export as export

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x.nii.gz"))

    monkeypatch.setattr(export.nib.Nifti1Image, "to_file_map", full_disk)  # under every writer
    status = main(["contrast", str(store), "a - b", "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "No space left on device" in err and "Traceback" not in err
    assert err.count("daskglm: error: ") == 1 and all(
        line.startswith(("daskglm: warning:", "daskglm: error: ")) for line in err.splitlines()), err


def test_cli_fit_checks_the_output_before_computing(unequal, tmp_path, capsys, monkeypatch):
    import errno

    import daskglm.cli.runtime as runtime
    from daskglm.graph.state import FittedState

    for i, (run, design) in enumerate(zip(unequal["runs"], unequal["designs"])):
        nib.save(run, tmp_path / f"run{i}.nii")
        design.to_csv(tmp_path / f"design{i}.csv")
    nib.save(unequal["mask"], tmp_path / "mask.nii")
    real_probe = runtime.check_writable

    def read_only(path, directory):
        if "ro" in str(path):
            raise OSError(errno.EROFS, f"cannot write the output {str(path)!r} (Read-only file system)")
        return real_probe(path, directory)

    def no_compute(self):
        raise AssertionError("the fit was computed before the output was checked")

    monkeypatch.setattr("daskglm.cli.commands.check_writable", read_only)
    monkeypatch.setattr(FittedState, "persist", no_compute)
    args = ["fit", str(tmp_path / "run0.nii"), str(tmp_path / "run1.nii"), "--design",
            str(tmp_path / "design0.csv"), str(tmp_path / "design1.csv"), "--mask", str(tmp_path / "mask.nii"),
            "-o", str(tmp_path / "ro" / "fit.zarr"), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Read-only file system" in err and err.strip().splitlines() == [
        line for line in err.strip().splitlines() if line.startswith("daskglm: ")]


def test_cli_disk_full_while_writing_the_store(unequal, store, tmp_path, capsys, monkeypatch):
    """ENOSPC while Zarr writes a chunk of ``daskglm fit --overwrite``: one line, exit 2, old fit kept."""
    import errno

    from zarr.storage import LocalStore

    expected = _z(open_model(store))
    for i, (run, design) in enumerate(zip(unequal["runs"], unequal["designs"])):
        nib.save(run, tmp_path / f"run{i}.nii")
        design.to_csv(tmp_path / f"design{i}.csv")
    nib.save(unequal["mask"], tmp_path / "mask.nii")
    original_set = LocalStore.set

    async def full_disk(self, key, value, *args, **kwargs):
        if "/c/" in key:
            raise OSError(errno.ENOSPC, "No space left on device", key)
        return await original_set(self, key, value, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "set", full_disk)
    status = main(["fit", str(tmp_path / "run0.nii"), str(tmp_path / "run1.nii"), "--design",
                   str(tmp_path / "design0.csv"), str(tmp_path / "design1.csv"), "--mask",
                   str(tmp_path / "mask.nii"), "--noise-model", "ar1", "-o", str(store), "--overwrite",
                   "--no-progress"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert status == 2 and "No space left on device" in err and "Traceback" not in err
    assert [line for line in err.splitlines() if not line.startswith("daskglm: warning:")] == [
        line for line in err.splitlines() if line.startswith("daskglm: error: ")], err
    assert err.count("daskglm: error: ") == 1
    np.testing.assert_array_equal(_z(open_model(store)), expected)


def test_check_writable_probes_for_real(tmp_path):
    from daskglm.cli.runtime import check_writable

    check_writable(tmp_path / "new" / "fit.zarr", directory=True)
    assert not any(p.name.startswith(".daskglm-probe") for p in tmp_path.iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        check_writable(blocker / "fit.zarr", directory=True)


# --------------------------------------------------------- 7. non-ASCII names
def test_unicode_contrast_names_end_to_end(unequal, tmp_path, capsys):
    designs = [d.rename(columns={"a": "café"}) for d in unequal["designs"]]
    model = FirstLevelModel(mask_img=unequal["mask"], noise_model="ols").fit(
        unequal["runs"], design_matrices=designs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = model.compute_contrast("café - b")
    assert img.header["descrip"].tobytes().startswith(b"z_score of contrast cafe - b")
    model.to_zarr(tmp_path / "fit.zarr")
    assert main(["contrast", str(tmp_path / "fit.zarr"), "cü=café - b", "-o", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    written = sorted((tmp_path / "out").iterdir())
    assert len(written) == 1
    assert nib.load(written[0]).header["descrip"].tobytes().startswith(b"z_score of cu")


def test_nifti_description_is_safe_ascii():
    from daskglm.io.export import nifti_description

    for text in ["café", "cü", "θ − β", "\x00\n", "x" * 200, "日本語"]:
        out = nifti_description(text)
        assert isinstance(out, bytes) and len(out) <= 79
        out.decode("ascii")


# ------------------------------------------------------------ 8. t_r, runs
def test_t_r_in_milliseconds_is_named(unequal):
    ev = _events(["a", "b"], 60, 1)
    with pytest.raises(DesignError, match=r"t_r=2000 s gives a run of .* hours; is it in milliseconds"):
        FirstLevelModel(t_r=2000, mask_img=unequal["mask"]).fit(unequal["runs"][0], events=ev)


@pytest.mark.parametrize(("t_r", "error", "fragment"), [
    ("2", TypeError, "'t_r' must be of type"), (True, TypeError, "'t_r' must be of type"),
    (0, ValueError, "'t_r' must be positive"), (-2.0, ValueError, "'t_r' must be positive"),
    (np.nan, ValueError, "finite"),
])
def test_t_r_types_and_values_as_nilearn(unequal, t_r, error, fragment):
    with pytest.raises(error, match=fragment):
        FirstLevelModel(t_r=t_r, mask_img=unequal["mask"]).fit(
            unequal["runs"][0], events=_events(["a"], 60, 1))


def test_one_volume_run_is_refused_by_name(unequal):
    one = nib.Nifti1Image(np.asarray(unequal["runs"][0].dataobj)[..., :1], AFFINE)
    with pytest.raises(DesignError, match=r"Run 1 .* 1 volume"):
        FirstLevelModel(t_r=T_R, mask_img=unequal["mask"]).fit(
            [unequal["runs"][0], one], events=[_events(["a"], 60, 1), _events(["a"], 1, 1)])


# ------------------------------------------- code in group-level contrasts
EVIL_GROUP = "intercept.to_csv('PWNED')"


@pytest.fixture(scope="module")
def group_study(unequal) -> Path:
    """A study store of three one-run subjects (the 60-scan run, shifted per subject)."""
    from daskglm import fit_subjects

    run, design = unequal["runs"][0], unequal["designs"][0]
    subjects = {f"0{i}": {"run_imgs": [nib.Nifti1Image(np.asarray(run.dataobj) + i, AFFINE)],
                          "design_matrices": [design]} for i in range(1, 4)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_subjects(subjects, unequal["root"] / "study.zarr", progress=False, raise_on_error=True,
                              model_params={"mask_img": unequal["mask"], "noise_model": "ols"})
    return Path(result.store)


def test_group_contrast_strings_execute_nothing(group_study, unequal, tmp_path, monkeypatch):
    from nilearn.glm.first_level import FirstLevelModel as NilearnFLM

    from daskglm import SecondLevelModel, non_parametric_inference

    monkeypatch.chdir(tmp_path)
    model = SecondLevelModel(mask_img=unequal["mask"]).fit(str(group_study))
    with pytest.raises(ContrastError, match="not valid"):
        model.compute_contrast(EVIL_GROUP, first_level_contrast="a")
    with pytest.raises(ContrastError, match="not valid"):
        model.generate_report(contrasts=[EVIL_GROUP], first_level_contrast="a")
    with pytest.raises(ContrastError, match="not valid"):
        non_parametric_inference(str(group_study), design_matrix=pd.DataFrame({"intercept": [1.0] * 3}),
                                 second_level_contrast=EVIL_GROUP, first_level_contrast="a",
                                 mask=unequal["mask"], n_perm=5)
    with warnings.catch_warnings():  # nilearn's first-level models given to daskglm's group model
        warnings.simplefilter("ignore")
        nl_models = [NilearnFLM(mask_img=unequal["mask"], noise_model="ols", subject_label=f"sub-{i}").fit(
            unequal["runs"][0], design_matrices=unequal["designs"][0]) for i in range(1, 3)]
    with pytest.raises(ContrastError, match="not valid"):
        SecondLevelModel(mask_img=unequal["mask"]).fit(nl_models).compute_contrast(
            first_level_contrast="a.to_csv('PWNED')")
    assert not (tmp_path / "PWNED").exists()
    # string contrasts still work, and the report keeps their names
    z = model.compute_contrast("intercept", first_level_contrast="a - b")
    assert np.allclose(z.get_fdata(), model.compute_contrast([1.0], first_level_contrast="a - b").get_fdata())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn's cut warnings on a 6x5x4 grid
        html = str(model.generate_report(contrasts=["intercept"], first_level_contrast="a",
                                         height_control=None, threshold=2.0))
    assert "intercept" in html and model._report_content["contrasts"] == ["intercept"]


def test_cli_group_contrast_with_code(group_study, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["group", str(group_study), "--first-level-contrast", "a", "--contrast", EVIL_GROUP,
                 "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not valid" in err and "Traceback" not in err
    assert not (tmp_path / "PWNED").exists() and not out.exists()


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


# ------------------------------------------------ stored surface geometry
@pytest.fixture(scope="module")
def surface_store(tmp_path_factory) -> Path:
    """A surface fit on a mesh read from GIfTI files (float32 coordinates), the files removed after writing."""
    from nilearn.conftest import _make_mesh
    from nilearn.surface import FileMesh, PolyMesh, SurfaceImage

    root = tmp_path_factory.mktemp("surface")
    small = _make_mesh()
    files = {}
    for part, m in small.parts.items():
        files[part] = root / f"{part}.surf.gii"
        m.to_gifti(files[part])
    mesh = PolyMesh(**{part: FileMesh(path) for part, path in files.items()})
    rng = np.random.default_rng(5)
    data = {part: 100 + rng.standard_normal((m.n_vertices, 40)) for part, m in small.parts.items()}
    design = pd.DataFrame({"a": rng.standard_normal(40), "constant": 1.0})
    model = FirstLevelModel(noise_model="ols").fit(SurfaceImage(mesh=mesh, data=data), design_matrices=design)
    path = root / "fit.zarr"
    model.to_zarr(path)
    for file in files.values():
        file.unlink()  # the store copies the mesh: it never refers to a file
    return path


def test_surface_mesh_is_copied_into_the_store(surface_store):
    record = json.loads(_root(surface_store)["attributes"]["surface_geometry"])
    assert "file" not in json.dumps(record) and set(record["arrays"]) == {"left", "right"}  # zarr arrays
    z = open_model(surface_store).compute_contrast("a")
    assert z.mesh.parts["left"].n_vertices == 4 and np.isfinite(np.asarray(z.data.parts["right"])).all()


@pytest.mark.parametrize(("record", "fragment"), [
    ({"kind": "surface", "parts": ["left"], "sizes": [4], "mesh": {"left": {"file": "/etc/hostname"}}},
     "names no mesh file"),
    ({"kind": "surface", "parts": ["left", "right"], "sizes": [4, 5], "standard": ["../../../etc", "pial"]},
     "unknown standard mesh"),
    ({"kind": "surface", "mesh": {"left": {"coordinates": [[0, 0, 0]], "faces": [[0, 1, 2]]}}}, "outside"),
    ({"kind": "surface", "mesh": {"left": {"coordinates": [[0, 0]], "faces": [[0, 0, 0]]}}}, r"\(n, 3\)"),
    ({"kind": "surface", "mesh": {"left": {"coordinates": [[0, 0, 0]], "faces": [[0, 0, 0]],
                                           "faces_dtype": "<f8"}}}, "dtype"),
    ({"kind": "cifti", "xml": "<CIFTI"}, ""),
    ("not json", ""),
    (7, ""),
])
def test_tampered_surface_geometry_is_a_store_error(surface_store, tmp_path, monkeypatch, record, fragment):
    from nilearn import surface

    store = tmp_path / "fit.zarr"
    shutil.copytree(surface_store, store)
    _set_root_attr(store, "surface_geometry", record if isinstance(record, (str, int)) else json.dumps(record))

    def no_file_mesh(*args, **kwargs):
        raise AssertionError("a store made the reader open a mesh file")

    monkeypatch.setattr(surface, "FileMesh", no_file_mesh)
    with pytest.raises(StoreError, match=f"fit.zarr.*surface_geometry.*{fragment}"):
        open_model(store)
