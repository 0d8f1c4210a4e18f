"""Older store formats: read (format 2), refused with a hint (format 1), rewritten by ``daskglm migrate``.

Stores written by format 1 and 2 writers (``tests/fixtures/old_stores``) and
one written here by the current writer with format 2's settings: after
``daskglm migrate`` each is a format 3 store with the same maps, chunk
checksums and nothing of the old layout left behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from daskglm import FirstLevelModel, open_model
from daskglm.cli import main
from daskglm.errors import StoreError
from tests._unequal import _chunks, _root, _run_group, _z


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


OLD_STORES = Path(__file__).parents[1] / "fixtures" / "old_stores"


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

