"""Maps written to NIfTI: ISA-L gzip with nibabel's bytes, and ASCII-safe descriptions.

``NiftiMap.to_filename`` compresses with ISA-L and writes the bytes nibabel
would; a failed write leaves the file intact.  Contrast names that are not
ASCII (``café``) work end to end (model, store, ``daskglm contrast``), and the
NIfTI ``descrip`` field gets a transliterated, bounded ASCII text.
"""

from __future__ import annotations

import gzip
import warnings

import nibabel as nib
import numpy as np
import pytest

from daskglm import FirstLevelModel
from daskglm.cli import main


def test_maps_are_written_by_isal_with_nibabels_bytes(tmp_path, monkeypatch):
    """NiftiMap.to_filename: ISA-L gzip, same decompressed bytes as nibabel's writer; failures lose nothing."""
    from isal import igzip

    from daskglm.io.export import NiftiMap, unmask

    rng = np.random.default_rng(0)
    mask = rng.random((9, 8, 7)) > 0.5
    img = unmask(rng.normal(size=int(mask.sum())).astype(np.float32), mask, np.diag([2.0, 2, 2, 1]), "z")
    assert isinstance(img, NiftiMap) and isinstance(img, nib.Nifti1Image)
    opened = []
    original = igzip.IGzipFile.__init__
    monkeypatch.setattr(igzip.IGzipFile, "__init__", lambda self, *a, **k: opened.append(a) or original(self, *a, **k))
    img.to_filename(tmp_path / "ours.nii.gz")
    assert len(opened) == 1 and opened[0][1] == "wb"  # compressed by ISA-L
    nib.Nifti1Image(img.dataobj, img.affine, img.header).to_filename(tmp_path / "nibabel.nii.gz")
    with gzip.open(tmp_path / "ours.nii.gz") as a, gzip.open(tmp_path / "nibabel.nii.gz") as b:
        assert a.read() == b.read()
    assert img.get_filename() == str(tmp_path / "ours.nii.gz")
    img.to_filename(tmp_path / "f64.nii.gz", dtype=np.float64)  # kwargs reach to_file_map, as in nibabel
    assert nib.load(tmp_path / "f64.nii.gz").get_data_dtype() == np.float64
    before = (tmp_path / "ours.nii.gz").read_bytes()
    with pytest.raises(Exception, match="bogus|data type"):
        img.to_filename(tmp_path / "ours.nii.gz", dtype="bogus")
    assert (tmp_path / "ours.nii.gz").read_bytes() == before  # a failed write leaves the file intact
    reloaded = NiftiMap.from_filename(tmp_path / "ours.nii.gz")
    reloaded.to_filename(tmp_path / "ours.nii.gz")  # saved over the file it reads from
    np.testing.assert_array_equal(nib.load(tmp_path / "ours.nii.gz").get_fdata(), img.get_fdata())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f64.nii.gz", "nibabel.nii.gz", "ours.nii.gz"]
    nib.save(img, tmp_path / "plain.nii")
    np.testing.assert_array_equal(nib.load(tmp_path / "plain.nii").get_fdata(), img.get_fdata())


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

