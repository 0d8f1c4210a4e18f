"""Reading runs: every bad run file or image raises a clear error before heavy work.

Missing paths and directories, bytes that are not NIfTI, other image formats,
truncated ``.nii`` and ``.nii.gz`` files, corrupt gzip streams, 3D images and
inputs of the wrong type.  Each test asserts the exception type, that the
message names the problem and the offending value, and that it comes within
seconds (``raises_fast``); ``no_heavy_work`` fails on any volume read.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from daskglm.errors import NiftiInputError
from tests.conftest import N_SCANS, SHAPE, _model, raises_fast


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
