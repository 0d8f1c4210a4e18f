"""The package's shape: one-way layers, no import cycle, small modules, pure kernels.

Imports are read from the source (module level and inside functions alike),
so a lazy import cannot hide a cycle or an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "daskglm"
#: A smell alarm, not a design rule: a module is as long as its one idea needs (no split to
#: meet a count), but past this it likely holds two ideas.
MAX_LINES = 650

#: Bottom to top.  A module may import modules of its own layer or of lower ones.
LAYERS = [
    ("daskglm._version", "daskglm.errors", "daskglm.compat"),
    ("daskglm.kernels",),
    ("daskglm.io",),
    ("daskglm.data",),  # simulators: they write files, nothing above reads them
    ("daskglm.glm",),
    ("daskglm.graph",),
    ("daskglm.space",),  # the element space: stores record it, so it sits below them
    ("daskglm.store",),
    ("daskglm.reporting",),
    ("daskglm.first_level",),
    ("daskglm.studies", "daskglm.reporting.tables", "daskglm.betas"),
    ("daskglm.group",),
    ("daskglm.cli", "daskglm"),
]
#: The statistics: numpy and scipy only.
PURE_LAYER = "daskglm.kernels"
FORBIDDEN_IN_KERNELS = ("dask", "distributed", "xarray", "zarr", "fsspec", "nibabel")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(daskglm modules imported, third-party top-level packages imported)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    internal, external = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "daskglm":
                    internal.add(alias.name)
                else:
                    external.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.split(".")[0] != "daskglm":
                external.add(node.module.split(".")[0])
                continue
            target = _resolve(module, is_package, node.level, node.module) if node.level else node.module
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                candidate = f"{target}.{alias.name}"
                internal.add(candidate if candidate in MODULES else target)
    return {m for m in internal if m in MODULES and m != module}, external


GRAPH = {m: _imports(m)[0] for m in MODULES}


def _layer(module: str) -> int:
    best, best_len = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = i, len(name)
    assert best is not None, f"{module} is in no layer of LAYERS; add it"
    return best


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_import_cycle():
    visiting, done, path = set(), set(), []

    def visit(m):
        visiting.add(m)
        path.append(m)
        for dep in sorted(GRAPH[m]):
            if dep in visiting:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in done:
                visit(dep)
        visiting.discard(m)
        done.add(m)
        path.pop()

    for m in sorted(MODULES):
        if m not in done:
            visit(m)


def test_layers_import_only_downward():
    upward = [
        f"{m} (layer {_layer(m)}) imports {dep} (layer {_layer(dep)})"
        for m, deps in GRAPH.items() for dep in deps if _layer(dep) > _layer(m)
    ]
    assert not upward, "\n".join(upward)


def test_kernels_are_pure_numpy():
    offenders = []
    for m in MODULES:
        if m == PURE_LAYER or m.startswith(PURE_LAYER + "."):
            internal, external = _imports(m)
            offenders += [f"{m} imports {x}" for x in external if x in FORBIDDEN_IN_KERNELS]
            offenders += [
                f"{m} imports {x}" for x in internal
                if not x.startswith(PURE_LAYER) and x != "daskglm.errors"
            ]
    assert not offenders, "\n".join(offenders)


def test_modules_stay_small():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_one_home_per_exception():
    """Every exception class is defined in daskglm/errors.py."""
    defined = []
    for m, p in MODULES.items():
        if m == "daskglm.errors":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id.endswith(("Error", "Exception")) for b in node.bases
            ):
                defined.append(f"{m}.{node.name}")
    assert not defined, f"exception classes outside daskglm.errors: {defined}"


def test_every_exception_is_exported():
    """daskglm.errors.__all__ lists every exception class it defines."""
    import daskglm.errors as errors

    classes = {name for name, obj in vars(errors).items()
               if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__}
    assert classes - set(errors.__all__) == set(), classes - set(errors.__all__)


#: The estimator's package: the only code that may read a model's private fitted state.
ESTIMATOR_PACKAGE = "daskglm.first_level"
PRIVATE_MODEL_ATTRS = ("_state", "_unmask", "_masker", "_timeseries", "_check_fitted", "_fit_options", "_PARAM_NAMES")


def _private_model_reads(source: str) -> list[str]:
    """``x._state``-style accesses, also through ``getattr`` (not ``self._state`` on a class's own state)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_MODEL_ATTRS:
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id == "self"):
                found.append(f"line {node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in PRIVATE_MODEL_ATTRS):
            found.append(f"line {node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_private_state_read_checker_catches_a_violation():
    assert _private_model_reads("def f(model):\n    return model._state.space\n") == ["line 2: ._state"]
    assert _private_model_reads("class A:\n    def f(self):\n        return self._state\n") == []
    assert _private_model_reads("x = getattr(model, '_state', None)\n") == ["line 1: getattr(..., '_state')"]


def test_no_private_model_state_outside_the_estimator_package():
    """Reports, stores, studies, group and CLI read the fitted-state interface (``space_``, ...), not ``_state``."""
    offenders = []
    for m, p in MODULES.items():
        if m == ESTIMATOR_PACKAGE or m.startswith(ESTIMATOR_PACKAGE + "."):
            continue
        offenders += [f"{m}: {hit}" for hit in _private_model_reads(p.read_text())]
    assert not offenders, "\n".join(offenders)


def test_no_volume_or_surface_branch_outside_the_space():
    """Only daskglm.space decides what a run's elements are (``geometry is None`` / ``is_surface_source``)."""
    pattern = ("geometry is None", "geometry is not None", "is_surface_source(")
    # the store records a space's optional geometry (absent for volumes): that is its file format
    allowed = ("daskglm.space", "daskglm.store.geometry")
    offenders = [
        f"{m}: {needle}" for m, p in MODULES.items() if not m.startswith(allowed)
        for needle in pattern if needle in p.read_text()
    ]
    assert not offenders, "\n".join(offenders)


#: The one module that may import nilearn's private helpers and undocumented modules
#: (``daskglm/compat/nilearn.py``).
COMPAT_PACKAGE = "daskglm.compat"


def _is_nilearn(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] == "nilearn"


def _private_nilearn_imports(source: str) -> list[str]:
    """Imports of nilearn's private corners: a ``_``-prefixed module component or an imported ``_`` name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names
                      if _is_nilearn(a.name) and any(part.startswith("_") for part in a.name.split("."))]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_nilearn(node.module):
            private_module = any(part.startswith("_") for part in node.module.split("."))
            found += [f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if private_module or a.name.startswith("_")]
    return found


def _nilearn_names(tree: ast.AST) -> set[str]:
    """Names bound to nilearn modules, classes or functions by import statements (anywhere in the module)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _is_nilearn(a.name):
                    names.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_nilearn(node.module):
            names.update(a.asname or a.name for a in node.names)
    return names


def _root_name(node: ast.AST) -> str | None:
    """``a`` of ``a.b.c`` / ``a.b[0].c`` (None when the chain starts elsewhere, e.g. at a call)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _nilearn_attribute_assignments(source: str) -> list[str]:
    """Assignments (``=``, ``+=``, ``del``, ``setattr``/``delattr``) to attributes of nilearn's modules/objects."""
    tree = ast.parse(source)
    nilearn_names = _nilearn_names(tree)
    found = []

    def check(target: ast.AST, lineno: int) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                check(elt, lineno)
        elif isinstance(target, (ast.Attribute, ast.Subscript)) and _root_name(target) in nilearn_names:
            found.append(f"line {lineno}: {ast.unparse(target)}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                check(target, node.lineno)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            check(node.target, node.lineno)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                check(target, node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("setattr", "delattr") and node.args):
            obj = node.args[0]
            if _root_name(obj) in nilearn_names:
                found.append(f"line {node.lineno}: {node.func.id}({ast.unparse(obj)}, ...)")
    return sorted(found, key=lambda hit: int(hit.split(":")[0].removeprefix("line ")))


PLANTED_NILEARN_VIOLATIONS = '''
import nilearn
import nilearn._utils.glm
from nilearn.glm._base import BaseGLM
from nilearn.glm.first_level import first_level as module
from nilearn.maskers import NiftiMasker


def patch(fn):
    from nilearn.glm.first_level.first_level import _list_valid_subjects

    module._get_processed_imgs = fn
    nilearn.glm.first_level.x, other = fn, 1
    NiftiMasker.fit += 1
    module.__dict__["_get_masks_files"] = fn
    setattr(module, "_get_masks_files", fn)
    del module.first_level_from_bids
    return _list_valid_subjects
'''

CLEAN_NILEARN_USE = '''
from nilearn.interfaces.bids import get_bids_files
from nilearn.maskers import NiftiMasker


class Model(NiftiMasker):
    def fit(self):
        self.mask_img_ = None


def use(masker_type):
    masker = NiftiMasker(smoothing_fwhm=None)
    masker.smoothing_fwhm = 4
    setattr(masker, "verbose", 0)
    files = get_bids_files("/data")
    files[0] = None
    return masker, files
'''


def test_nilearn_rules_catch_planted_violations():
    assert _private_nilearn_imports(PLANTED_NILEARN_VIOLATIONS) == [
        "line 3: import nilearn._utils.glm",
        "line 4: from nilearn.glm._base import BaseGLM",
        "line 10: from nilearn.glm.first_level.first_level import _list_valid_subjects",
    ]
    assert _nilearn_attribute_assignments(PLANTED_NILEARN_VIOLATIONS) == [
        "line 12: module._get_processed_imgs",
        "line 13: nilearn.glm.first_level.x",
        "line 14: NiftiMasker.fit",
        "line 15: module.__dict__['_get_masks_files']",
        "line 16: setattr(module, ...)",
        "line 17: module.first_level_from_bids",
    ]
    assert _private_nilearn_imports(CLEAN_NILEARN_USE) == []
    assert _nilearn_attribute_assignments(CLEAN_NILEARN_USE) == []


def test_no_private_nilearn_import_outside_compat():
    """nilearn's private helpers are imported in daskglm/compat/ only (one door, one place to update)."""
    offenders = []
    for m, p in MODULES.items():
        if m == COMPAT_PACKAGE or m.startswith(COMPAT_PACKAGE + "."):
            continue
        offenders += [f"{m}: {hit}" for hit in _private_nilearn_imports(p.read_text())]
    assert not offenders, "\n".join(offenders)


def test_no_assignment_to_nilearn_attributes():
    """daskglm never patches nilearn at run time (compat included: it wraps, it does not swap)."""
    offenders = [f"{m}: {hit}" for m, p in MODULES.items()
                 for hit in _nilearn_attribute_assignments(p.read_text())]
    assert not offenders, "\n".join(offenders)


# --------------------------------------------------- nilearn's undocumented modules, through compat only
def _nilearn_public_names(module: str) -> frozenset[str] | None:
    """``module.__all__`` (what nilearn documents there), or None if it is not importable or has none."""
    import importlib

    try:
        found = importlib.import_module(module)
    except ImportError:
        return None
    names = getattr(found, "__all__", None)
    return None if names is None else frozenset(names)


def _documented_nilearn_module(module: str) -> bool:
    """Whether each component of ``nilearn.a.b`` is a public name of its parent package (its ``__all__``).

    nilearn lists its documented modules in its packages' ``__all__`` (``nilearn.__all__`` has
    ``glm``, ``surface``, ``maskers``, ...; ``nilearn.glm.__all__`` has ``first_level``); a module
    it does not list there (``nilearn.surface.surface``, ``nilearn.glm.io``,
    ``nilearn.interfaces.bids.utils``) is an implementation module whose content may move in any
    release.
    """
    parts = module.split(".")
    for depth in range(1, len(parts)):
        public = _nilearn_public_names(".".join(parts[:depth]))
        if public is None or parts[depth] not in public:
            return False
    return True


def _undocumented_nilearn_imports(source: str) -> list[str]:
    """Imports of nilearn modules it does not document, and of names its documented modules do not list.

    ``import nilearn.x.y`` / ``from nilearn.x.y import ...``: every component must be documented
    (:func:`_documented_nilearn_module`); ``from nilearn.x import name``: ``name`` must be in
    ``nilearn.x.__all__`` when the module has one (so ``from nilearn.surface import surface``,
    the undocumented module under a public package, is caught too), else not ``_``-prefixed.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names
                      if _is_nilearn(a.name) and not _documented_nilearn_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_nilearn(node.module):
            if not _documented_nilearn_module(node.module):
                found += [f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names]
                continue
            public = _nilearn_public_names(node.module)
            found += [f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if (a.name not in public if public is not None else a.name.startswith("_"))]
    return found


PLANTED_UNDOCUMENTED_NILEARN = '''
import nilearn.surface.surface
from nilearn.surface.surface import data_to_gifti
from nilearn.surface import surface
import nilearn.glm.io as glm_io
from nilearn.glm.first_level import first_level


def use():
    from nilearn.interfaces.bids.utils import bids_entities
    from nilearn.maskers.masker_validation import check_embedded_masker
    from nilearn.no_such_module import anything
    return data_to_gifti, surface, glm_io, first_level, bids_entities, check_embedded_masker, anything
'''

DOCUMENTED_NILEARN_USE = '''
import nilearn
import nilearn.glm.first_level
from nilearn import plotting
from nilearn.exceptions import MeshDimensionError
from nilearn.glm.first_level import make_first_level_design_matrix
from nilearn.interfaces.bids import get_bids_files
from nilearn.masking import compute_multi_epi_mask
from nilearn.surface import PolyMesh, SurfaceImage
'''


def test_undocumented_nilearn_rule_catches_planted_violations():
    assert _undocumented_nilearn_imports(PLANTED_UNDOCUMENTED_NILEARN) == [
        "line 2: import nilearn.surface.surface",
        "line 3: from nilearn.surface.surface import data_to_gifti",
        "line 4: from nilearn.surface import surface",
        "line 5: import nilearn.glm.io",
        "line 6: from nilearn.glm.first_level import first_level",
        "line 10: from nilearn.interfaces.bids.utils import bids_entities",
        "line 11: from nilearn.maskers.masker_validation import check_embedded_masker",
        "line 12: from nilearn.no_such_module import anything",
    ]
    assert _undocumented_nilearn_imports(DOCUMENTED_NILEARN_USE) == []
    # the private corners are undocumented too (and a submodule imported by name from a public package)
    assert _undocumented_nilearn_imports(PLANTED_NILEARN_VIOLATIONS) == [
        "line 3: import nilearn._utils.glm",
        "line 4: from nilearn.glm._base import BaseGLM",
        "line 5: from nilearn.glm.first_level import first_level",
        "line 10: from nilearn.glm.first_level.first_level import _list_valid_subjects",
    ]


def test_no_undocumented_nilearn_import_outside_compat():
    """Modules nilearn does not document are reached through daskglm/compat/ only, as its private ones."""
    offenders = []
    for m, p in MODULES.items():
        if m == COMPAT_PACKAGE or m.startswith(COMPAT_PACKAGE + "."):
            continue
        offenders += [f"{m}: {hit}" for hit in _undocumented_nilearn_imports(p.read_text())]
    assert not offenders, "\n".join(offenders)
