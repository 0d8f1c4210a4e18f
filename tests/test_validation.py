"""Every bad input raises a user-facing exception, with a clear message, before heavy work.

One test per bad input of issue 6.  Each asserts the exception type (a
``ValueError``/``TypeError``/``FileNotFoundError`` subclass, never a numpy
``IndexError``), that the message names the problem and the offending value,
and that it comes within seconds.  Fit-time checks must not read volume data:
the ``no_heavy_work`` fixture makes any volume read or dask computation fail.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import time
import warnings
from pathlib import Path

import dask
import nibabel as nib
import numpy as np
import pytest

from daskglm import FirstLevelModel, open_model
from daskglm.contrasts import ContrastError
from daskglm.datasets import make_fiac_like
from daskglm.design import DesignError
from daskglm.errors import NiftiInputError
from daskglm.io.nifti import FileRunSource
from daskglm.io.runs import ArrayRunSource
from daskglm.model import NotFittedError
from daskglm.store.zarr import StoreError
from tests.conftest import load_named_designs

SHAPE = (12, 14, 12)
N_SCANS = 60
MAX_SECONDS = 5.0


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def vdata(tmp_path_factory) -> dict:
    """A small two-run .nii.gz dataset plus an uncompressed copy of run 1."""
    root = tmp_path_factory.mktemp("validation")
    data = make_fiac_like(root / "gz", shape=SHAPE, n_scans=N_SCANS, seed=5)
    plain = make_fiac_like(root / "nii", shape=SHAPE, n_scans=N_SCANS, seed=5, n_runs=1, compress=False)
    data["design1"], data["design2"] = load_named_designs(data)
    data["nii1"] = plain["func1"]
    data["affine"] = nib.load(data["mask"]).affine
    data["root"] = root
    return data


@pytest.fixture(scope="module")
def fitted(vdata) -> FirstLevelModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FirstLevelModel(mask_img=vdata["mask"], noise_model="ols")
        return model.fit(vdata["func1"], design_matrices=vdata["design1"])


@pytest.fixture(scope="module")
def store(vdata, fitted) -> Path:
    path = vdata["root"] / "good.zarr"
    fitted.to_zarr(path)
    return path


def _forbidden(*args, **kwargs):
    raise AssertionError("volume data was read (or dask computed) during input validation")


def _raising_scheduler(dsk, keys, **kwargs):
    raise AssertionError("dask computed something during input validation")


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Fail on any volume read or dask computation: validation must come first."""
    monkeypatch.setattr(FileRunSource, "read", _forbidden)
    monkeypatch.setattr(FileRunSource, "iter_chunks", _forbidden)
    monkeypatch.setattr(ArrayRunSource, "read", _forbidden)
    with dask.config.set(scheduler=_raising_scheduler):
        yield


@contextlib.contextmanager
def raises_fast(exc_type, *fragments: str):
    """``pytest.raises`` that also checks the message names the problem, and speed."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc_type) as info:
            yield info
    elapsed = time.perf_counter() - start
    assert not isinstance(info.value, (IndexError, KeyError, AssertionError))
    assert isinstance(info.value, (ValueError, TypeError, FileNotFoundError))
    message = str(info.value)
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in message: {message!r}"
    assert elapsed < MAX_SECONDS, f"took {elapsed:.1f}s to raise"


def _model(vdata, **kwargs) -> FirstLevelModel:
    return FirstLevelModel(mask_img=vdata["mask"], **kwargs)


# ------------------------------------------------------------ run files
def test_missing_run_file(vdata, no_heavy_work):
    path = str(vdata["root"] / "no_such_run.nii.gz")
    with raises_fast(FileNotFoundError, path, "does not exist"):
        _model(vdata).fit(path, design_matrices=vdata["design1"])


def test_garbage_bytes_run(vdata, no_heavy_work):
    path = vdata["root"] / "garbage.nii"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with raises_fast(NiftiInputError, str(path), "nifti"):
        _model(vdata).fit(str(path), design_matrices=vdata["design1"])


def test_bad_gzip_run(vdata, no_heavy_work):
    path = vdata["root"] / "badgzip.nii.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + np.random.default_rng(1).bytes(4096))
    with raises_fast(NiftiInputError, str(path), "nifti"):
        _model(vdata).fit(str(path), design_matrices=vdata["design1"])


def test_non_nifti_text_file(vdata, no_heavy_work):
    path = vdata["root"] / "notes.nii.gz"
    path.write_bytes(gzip.compress(b"these are my notes, not an image\n" * 20))
    with raises_fast(NiftiInputError, str(path), "nifti"):
        _model(vdata).fit(str(path), design_matrices=vdata["design1"])


def test_non_nifti_image_format(vdata, no_heavy_work):
    path = vdata["root"] / "run.mgz"
    nib.save(nib.MGHImage(np.zeros((*SHAPE, N_SCANS), np.float32), vdata["affine"]), path)
    with raises_fast(NiftiInputError, str(path), "MGHImage", "not a NIfTI"):
        _model(vdata).fit(str(path), design_matrices=vdata["design1"])


def test_directory_as_run(vdata, no_heavy_work):
    with raises_fast(NiftiInputError, str(vdata["root"]), "directory"):
        _model(vdata).fit(str(vdata["root"]), design_matrices=vdata["design1"])


def test_truncated_nii(vdata, no_heavy_work):
    raw = Path(vdata["nii1"]).read_bytes()
    path = vdata["root"] / "truncated.nii"
    path.write_bytes(raw[: len(raw) // 2])
    with raises_fast(NiftiInputError, str(path), "truncated", f"{N_SCANS} volumes"):
        _model(vdata).fit(str(path), design_matrices=vdata["design1"])


@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_truncated_nii_gz_fails_at_fit(vdata, no_heavy_work, fraction):
    raw = Path(vdata["func1"]).read_bytes()
    path = vdata["root"] / f"truncated_{fraction}.nii.gz"
    path.write_bytes(raw[: int(len(raw) * fraction)])
    with raises_fast(NiftiInputError, str(path), "truncated", f"{N_SCANS} volumes"):
        _model(vdata).fit(str(path), design_matrices=vdata["design1"])


def test_nii_gz_with_fewer_volumes_than_header(vdata, no_heavy_work):
    """A complete gzip stream that holds only half the volumes the header announces."""
    raw = gzip.decompress(Path(vdata["func1"]).read_bytes())
    path = vdata["root"] / "short.nii.gz"
    path.write_bytes(gzip.compress(raw[: len(raw) // 2], compresslevel=1))
    with raises_fast(NiftiInputError, str(path), "truncated", f"{N_SCANS} volumes"):
        _model(vdata).fit(str(path), design_matrices=vdata["design1"])


def test_corrupt_gzip_stream_fails_clearly_when_read(vdata):
    """Bytes flipped mid-stream pass the header checks; reading must still fail clearly."""
    raw = bytearray(Path(vdata["func1"]).read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 64] = bytes(b ^ 0xFF for b in raw[middle : middle + 64])
    path = vdata["root"] / "corrupt.nii.gz"
    path.write_bytes(bytes(raw))
    with raises_fast(NiftiInputError, str(path), "corrupt"):
        model = _model(vdata).fit(str(path), design_matrices=vdata["design1"])
        model.compute_contrast(np.eye(vdata["design1"].shape[1])[0])


def test_3d_run_file(vdata, no_heavy_work):
    path = vdata["root"] / "vol3d.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), vdata["affine"]), path)
    with raises_fast(NiftiInputError, "3D", str(SHAPE), "4D"):
        _model(vdata).fit(str(path), design_matrices=vdata["design1"])


def test_3d_run_image(vdata, no_heavy_work):
    img = nib.Nifti1Image(np.ones(SHAPE, np.float32), vdata["affine"])
    with raises_fast(NiftiInputError, "3D", str(SHAPE)):
        _model(vdata).fit([img], design_matrices=[vdata["design1"]])


def test_run_of_wrong_type(vdata, no_heavy_work):
    with raises_fast(TypeError, "int", "Nifti1Image"):
        _model(vdata).fit(42, design_matrices=vdata["design1"])


def test_no_runs(vdata, no_heavy_work):
    with raises_fast(ValueError, "empty"):
        _model(vdata).fit([], design_matrices=[])


# ---------------------------------------------------------------- designs
def test_design_rows_differ_from_scans(vdata, no_heavy_work):
    with raises_fast(DesignError, "50 rows", f"{N_SCANS} scans"):
        _model(vdata).fit(vdata["func1"], design_matrices=vdata["design1"].iloc[:50])


@pytest.mark.parametrize("n_designs", [1, 3])
def test_design_count_differs_from_run_count(vdata, no_heavy_work, n_designs):
    designs = [vdata["design1"]] * n_designs
    with raises_fast(ValueError, f"{n_designs} design matrices", "2 run(s)"):
        _model(vdata).fit([vdata["func1"], vdata["func2"]], design_matrices=designs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_design(vdata, no_heavy_work, bad):
    design = vdata["design1"].copy()
    column = design.columns[2]
    design.iloc[7, 2] = bad
    with raises_fast(DesignError, "NaN or infinite", "row 7", repr(column)):
        _model(vdata).fit(vdata["func1"], design_matrices=design)


def test_design_with_more_columns_than_scans(vdata, no_heavy_work):
    design = np.random.default_rng(0).standard_normal((N_SCANS, N_SCANS + 5))
    with raises_fast(DesignError, f"{N_SCANS + 5} columns", f"{N_SCANS} scans"):
        _model(vdata).fit(vdata["func1"], design_matrices=design)


def test_non_numeric_design(vdata, no_heavy_work):
    design = vdata["design1"].copy()
    design["label"] = "abc"
    with raises_fast(DesignError, "non-numeric", "abc"):
        _model(vdata).fit(vdata["func1"], design_matrices=design)


def test_missing_design_file(vdata, no_heavy_work):
    path = str(vdata["root"] / "missing_design.npz")
    with raises_fast(FileNotFoundError, path):
        _model(vdata).fit(vdata["func1"], design_matrices=path)


def test_design_of_wrong_type(vdata, no_heavy_work):
    with raises_fast(TypeError, "Design matrix 0", "dict"):
        _model(vdata).fit(vdata["func1"], design_matrices={"a": 1})


def test_missing_events_file(vdata, no_heavy_work):
    path = str(vdata["root"] / "missing_events.tsv")
    with raises_fast(FileNotFoundError, path):
        FirstLevelModel(t_r=2.5, mask_img=vdata["mask"]).fit(vdata["func1"], events=path)


def test_negative_t_r(vdata, no_heavy_work):
    with raises_fast(ValueError, "t_r", "-2"):
        FirstLevelModel(t_r=-2, mask_img=vdata["mask"]).fit(vdata["func1"], events=vdata["events1"])


# ------------------------------------------------------------ mask, geometry
def test_mask_shape_differs(vdata, no_heavy_work):
    path = vdata["root"] / "mask_small.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 14, 12), np.uint8), vdata["affine"]), path)
    with raises_fast(NiftiInputError, "(10, 14, 12)", str(SHAPE)):
        FirstLevelModel(mask_img=str(path)).fit(vdata["func1"], design_matrices=vdata["design1"])


def test_mask_affine_differs(vdata, no_heavy_work):
    affine = vdata["affine"].copy()
    affine[0, 3] += 7.0
    mask = nib.Nifti1Image(np.ones(SHAPE, np.uint8), affine)
    with raises_fast(NiftiInputError, "affine", f"{affine[0, 3]:g}"):
        FirstLevelModel(mask_img=mask).fit(vdata["func1"], design_matrices=vdata["design1"])


def test_empty_mask(vdata, no_heavy_work):
    mask = nib.Nifti1Image(np.zeros(SHAPE, np.uint8), vdata["affine"])
    with raises_fast(NiftiInputError, "mask is empty"):
        FirstLevelModel(mask_img=mask).fit(vdata["func1"], design_matrices=vdata["design1"])


def test_missing_mask_file(vdata, no_heavy_work):
    path = str(vdata["root"] / "no_mask.nii.gz")
    with raises_fast(FileNotFoundError, path):
        FirstLevelModel(mask_img=path).fit(vdata["func1"], design_matrices=vdata["design1"])


def test_runs_with_different_affines(vdata, no_heavy_work):
    affine = vdata["affine"].copy()
    affine[1, 3] -= 4.5
    img = nib.load(vdata["func2"])
    moved = nib.Nifti1Image(np.zeros(img.shape, np.float32), affine)
    with raises_fast(NiftiInputError, "Run 1", "different affine", f"{affine[1, 3]:g}"):
        _model(vdata).fit([vdata["func1"], moved], design_matrices=[vdata["design1"], vdata["design2"]])


def test_runs_with_different_shapes(vdata, no_heavy_work):
    other = nib.Nifti1Image(np.zeros((12, 14, 10, N_SCANS), np.float32), vdata["affine"])
    with raises_fast(NiftiInputError, "Run 1", "(12, 14, 10)"):
        _model(vdata).fit([vdata["func1"], other], design_matrices=[vdata["design1"], vdata["design2"]])


# --------------------------------------------------------------- parameters
def test_unknown_noise_model(vdata, no_heavy_work):
    with raises_fast(ValueError, "noise_model", "'garch'"):
        _model(vdata, noise_model="garch").fit(vdata["func1"], design_matrices=vdata["design1"])


def test_unknown_whitening(vdata, no_heavy_work):
    with raises_fast(ValueError, "whitening", "'bogus'"):
        _model(vdata, whitening="bogus").fit(vdata["func1"], design_matrices=vdata["design1"])


def test_unknown_signal_scaling(vdata, no_heavy_work):
    with raises_fast(ValueError, "signal_scaling", "7"):
        _model(vdata, signal_scaling=7).fit(vdata["func1"], design_matrices=vdata["design1"])


@pytest.mark.parametrize("fwhm", [-3.0, [4.0, -1.0, 4.0], float("nan"), [4.0, 4.0]])
def test_negative_or_malformed_smoothing(vdata, no_heavy_work, fwhm):
    with raises_fast(ValueError, "smoothing_fwhm", repr(fwhm)):
        _model(vdata, smoothing_fwhm=fwhm).fit(vdata["func1"], design_matrices=vdata["design1"])


@pytest.mark.parametrize("fwhm", [1e6, float("inf")])
def test_absurd_smoothing(vdata, no_heavy_work, fwhm):
    with raises_fast(ValueError, "smoothing_fwhm"):
        _model(vdata, smoothing_fwhm=fwhm).fit(vdata["func1"], design_matrices=vdata["design1"])


def test_non_numeric_smoothing(vdata, no_heavy_work):
    with raises_fast(TypeError, "smoothing_fwhm", "'wide'"):
        _model(vdata, smoothing_fwhm="wide").fit(vdata["func1"], design_matrices=vdata["design1"])


def test_unknown_output_type(fitted):
    with raises_fast(ValueError, "output_type", "'zscore'", "z_score"):
        fitted.compute_contrast([1.0], output_type="zscore")


# ---------------------------------------------------------------- contrasts
def test_contrast_longer_than_design(fitted):
    p = fitted.design_matrices_[0].shape[1]
    with raises_fast(ContrastError, f"P={p}", f"length {p + 4}"):
        fitted.compute_contrast(np.ones(p + 4))


def test_f_contrast_wider_than_design(fitted):
    p = fitted.design_matrices_[0].shape[1]
    with raises_fast(ContrastError, f"P={p}", f"{p + 1}"):
        fitted.compute_contrast(np.ones((2, p + 1)))


@pytest.mark.parametrize("contrast", [[0.0, 0.0, 0.0], np.zeros((2, 3))])
def test_all_zero_contrast(fitted, contrast):
    with raises_fast(ContrastError, "null contrast", "zero"):
        fitted.compute_contrast(contrast)


def test_expression_with_unknown_column(fitted):
    with raises_fast(ContrastError, "not valid", "Unknown names: ['bogus']", "SSt-SSp"):
        fitted.compute_contrast("constant - bogus")


def test_non_finite_contrast(fitted):
    with raises_fast(ContrastError, "NaN or infinite"):
        fitted.compute_contrast([1.0, np.nan])


def test_contrast_of_wrong_dimension(fitted):
    with raises_fast(ContrastError, "1-D or 2-D", "(2, 2, 3)"):
        fitted.compute_contrast(np.ones((2, 2, 3)))


def test_unknown_stat_type(fitted):
    with raises_fast(ContrastError, "stat_type", "'chi2'"):
        fitted.compute_contrast([1.0], stat_type="chi2")


def test_too_many_per_run_contrasts(fitted):
    with raises_fast(ContrastError, "3 contrasts", "1 runs"):
        fitted.compute_contrast(["constant"] * 3)


def test_contrast_before_fit(vdata):
    model = _model(vdata)
    with raises_fast(NotFittedError, "not fitted", "fit"):
        model.compute_contrast([1.0])
    with raises_fast(NotFittedError, "not fitted"):
        model.to_zarr(vdata["root"] / "never.zarr")
    assert not (vdata["root"] / "never.zarr").exists()


# ---------------------------------------------------------------- open_model
def test_open_model_missing_path(vdata):
    path = str(vdata["root"] / "nothing_here.zarr")
    with raises_fast(FileNotFoundError, path):
        open_model(path)


def test_open_model_on_plain_directory(vdata):
    path = str(vdata["root"] / "gz")  # a folder of NIfTI files, no Zarr metadata
    with raises_fast((StoreError, FileNotFoundError), path, "store"):
        open_model(path)


def test_open_model_on_nifti_file(vdata):
    with raises_fast((StoreError, FileNotFoundError), vdata["func1"], "store"):
        open_model(vdata["func1"])


def test_open_model_on_foreign_zarr(vdata):
    import zarr

    path = vdata["root"] / "foreign.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.attrs["made_by"] = "someone else"
    group.create_array("x", shape=(3,), dtype="f8")
    with raises_fast(StoreError, str(path), "daskglm"):
        open_model(path)


def test_open_model_newer_format_version(vdata, store, tmp_path):
    import shutil

    import zarr

    from daskglm.store.zarr import FORMAT_VERSION

    copy = tmp_path / "newer.zarr"
    shutil.copytree(store, copy)
    group = zarr.open_group(str(copy), mode="r+")
    assert "daskglm_format_version" in group.attrs, "stores must carry a format version"
    group.attrs["daskglm_format_version"] = FORMAT_VERSION + 1
    zarr.consolidate_metadata(str(copy))
    with raises_fast(StoreError, "version", str(FORMAT_VERSION + 1)):
        open_model(copy)


def test_good_store_opens(store, fitted):
    """Control for the open_model tests: the same fixture store does open."""
    model = open_model(store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = model.compute_contrast("constant", output_type="effect_size")
        b = fitted.compute_contrast("constant", output_type="effect_size")
    np.testing.assert_allclose(np.asarray(a.dataobj), np.asarray(b.dataobj))
    assert os.path.isdir(store)
