"""The private names of other libraries that digitune relies on still exist where their boundary module says.

When one fails, a new release moved what the named boundary module reaches into: update
that module (and only it), then its REQUIRED list.
"""

from __future__ import annotations

import importlib

import pytest

from digitune.models import _fused, _tf_private
from digitune.search import _optuna_private
from digitune.search.cli import _click_private
from conftest import REPO


def _missing(module: str, path: str) -> str | None:
    try:
        target = importlib.import_module(module)
    except ImportError:
        return module
    for part in [p for p in path.split(".") if p]:
        annotations = getattr(target, "__annotations__", {}) if isinstance(target, type) else {}
        if not hasattr(target, part) and part not in annotations and not _set_in_init(target, part):
            return f"{module}.{path}"
        target = getattr(target, part, None)
    return None


def _set_in_init(cls, name: str) -> bool:
    """Whether ``cls.__init__`` (or a parent's) assigns ``self.<name>``: instance attributes have no class attribute."""
    import inspect

    for klass in getattr(cls, "__mro__", ()):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            source = inspect.getsource(init)
        except (OSError, TypeError):
            continue
        if f"self.{name} =" in source or f"self.{name}:" in source:
            return True
    return False


BOUNDARIES = {"search/_optuna_private.py": _optuna_private, "search/cli/_click_private.py": _click_private,
              "models/_fused.py": _fused, "models/_tf_private.py": _tf_private}
CASES = [(where, module, path) for where, boundary in BOUNDARIES.items() for module, path in boundary.REQUIRED]


@pytest.mark.parametrize(("where", "module", "path"), CASES, ids=lambda v: v)
def test_each_library_still_has_what_its_boundary_uses(where, module, path):
    missing = _missing(module, path)
    library = module.split(".")[0]
    version = getattr(importlib.import_module(library), "__version__", "?")
    assert missing is None, f"{library} {version} moved {missing}; update {where} and its REQUIRED list"


def test_the_layout_checker_knows_the_same_boundaries():
    import runpy

    checker = runpy.run_path(str(REPO / ".ci" / "check_layout.py"))
    assert checker["BOUNDARIES"] == set(BOUNDARIES)


def test_a_moved_name_is_reported_with_its_full_path():
    assert _missing("optuna.study.study", "Study._no_such_name") == "optuna.study.study.Study._no_such_name"
    assert _missing("optuna.no_such_module", "") == "optuna.no_such_module"
    assert _missing("optuna.study.study", "Study._storage") is None  # set in __init__, not on the class
