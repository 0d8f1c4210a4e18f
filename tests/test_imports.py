"""What importing daskglm and building a fit cost: only the modules the work needs.

``import daskglm`` resolves its public names lazily (PEP 562); a
``FirstLevelModel`` fit of NIfTI paths must not import scikit-learn (pulled in
by nilearn's maskers, surfaces and second level), and building its graph must
not import ``dask.distributed`` (probed by dask's rechunk and by the client
lookup; ``dask.compute`` itself probes it later).
Each case runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> dict:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_daskglm_is_lazy():
    loaded = _modules_after("import daskglm\nassert 'FirstLevelModel' in dir(daskglm)")
    assert "daskglm" in loaded
    assert not {"dask.array", "daskglm.first_level.model", "daskglm.group", "sklearn"} & loaded


def test_public_names_resolve_on_first_use():
    loaded = _modules_after(
        "import daskglm\n"
        "from daskglm import *\n"
        "assert FirstLevelModel is daskglm.first_level.model.FirstLevelModel\n"
        "assert SecondLevelModel.__module__.startswith('daskglm.group')\n"
        "try:\n    daskglm.no_such_name\nexcept AttributeError as err:\n    assert 'no_such_name' in str(err)\n"
        "else:\n    raise SystemExit('no AttributeError')\n"
    )
    assert "daskglm.group" in loaded


def test_building_a_fit_imports_neither_sklearn_nor_distributed(fiac_small):
    data = {k: fiac_small[k] for k in ("func1", "func2", "mask", "design_matrix1", "design_matrix2")}
    loaded = _modules_after(
        "import json, warnings\nimport numpy as np, pandas as pd\nwarnings.simplefilter('ignore')\n"
        "from daskglm import FirstLevelModel\n"
        f"d = json.loads({json.dumps(json.dumps(data))})\n"
        "X = [pd.DataFrame(np.load(d[f'design_matrix{i}'])['X']) for i in (1, 2)]\n"
        "m = FirstLevelModel(mask_img=d['mask'], smoothing_fwhm=5).fit([d['func1'], d['func2']], design_matrices=X)\n"
        "import sys\nassert 'distributed' not in sys.modules  # dask's own compute probes it later\n"
        "m.compute_contrast(np.eye(X[0].shape[1])[0])\n"
    )
    assert "daskglm.graph.fit" in loaded
    assert not {"sklearn", "nilearn.maskers", "nilearn.surface"} & loaded
