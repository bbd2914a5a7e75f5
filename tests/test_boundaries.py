"""The private names of other libraries that digitune relies on still exist where their boundary module says.

When one fails, a new release moved what the named boundary module reaches into: update
that module (and only it), then its REQUIRED list.
"""

from __future__ import annotations

import importlib

import optuna
import pytest

from digitune.search import _optuna_private


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


@pytest.mark.parametrize(("module", "path"), _optuna_private.REQUIRED, ids=lambda v: v)
def test_optuna_still_has_what_the_boundary_uses(module, path):
    missing = _missing(module, path)
    assert missing is None, (f"Optuna {optuna.__version__} moved {missing}; update digitune/search/_optuna_private.py "
                             f"(search/_optuna_private.py in the repository) and its REQUIRED list")


def test_a_moved_name_is_reported_with_its_full_path():
    assert _missing("optuna.study.study", "Study._no_such_name") == "optuna.study.study.Study._no_such_name"
    assert _missing("optuna.no_such_module", "") == "optuna.no_such_module"
    assert _missing("optuna.study.study", "Study._storage") is None  # set in __init__, not on the class
