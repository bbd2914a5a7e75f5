#!/usr/bin/env python3
"""Check the code's sizes and arrows (issue 18): modules a reader can hold, one-way imports.

    python .ci/check_layout.py            # exit 1 and one line per problem
    python .ci/check_layout.py --current  # print today's offenders as allowlist TOML

Rules, over the product packages (``digitune/``, ``search/``, ``models/``, ``dashboard/``):
modules at most 400 lines, functions at most 60 (``def`` line to last line, decorators
excluded); ``models`` imports nothing of ``search`` or ``dashboard``, ``search`` nothing of
``dashboard``; private names of Optuna, Keras, TensorFlow, typer and Streamlit only in the
boundary modules; every import names the root (``digitune.models``, never a bare ``models``:
that would find a user's own ``models.py``), in tests and bench too; every package folder is
one that pyproject.toml installs. ``.ci/layout_allowlist.toml`` lists today's offenders with their size: an
entry may shrink, never grow, and an entry that no longer offends must be deleted.
Uses only the standard library, so CI runs it before anything is installed.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("digitune", "search", "models", "dashboard")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# What each room may not import (by the room's folder name; absolute or relative imports).
FORBIDDEN = {"models": {"search", "dashboard"}, "search": {"dashboard"}}
FOREIGN = ("optuna", "keras", "tensorflow", "typer", "click", "streamlit")
# Private attributes of foreign objects (Optuna's studies, trials and storages; Keras' optimizers).
FOREIGN_PRIVATE_ATTRS = {
    "_storage", "_backend", "_study_id", "_trial_id", "_cached_frozen_trial", "_thread_local",
    "_get_stale_trial_ids", "_get_trials", "_set_trial_attr_without_commit",
    "_create_scoped_session", "_create_bracket_study", "_create_new_trial", "_set_trial_param",
    "_get_best_trial_id", "_apply_weight_decay", "_use_weight_decay", "_backend_update_step",
    "_get_variable_index", "_momentums", "_velocities", "_gradient_registry",
}
# Boundary modules: the one place per library where its private names may be used.
BOUNDARIES = {"search/_optuna_private.py", "search/cli/_click_private.py", "models/_fused.py", "models/_tf_private.py"}
_ATTR_CALLS = {"getattr", "setattr", "hasattr", "delattr"}
ALLOWLIST = Path(".ci", "layout_allowlist.toml")


def modules(root: Path = ROOT) -> list[Path]:
    """Every Python file of the product packages, relative to the repository root."""
    found = []
    for package in PACKAGES:
        found += sorted((root / package).rglob("*.py"))
    return [path.relative_to(root) for path in found]


def _room(path: Path) -> str:
    return path.parts[0]


def _imported_rooms(tree: ast.Module, path: Path) -> set[str]:
    """The product rooms a module imports, absolute (``search.x``, ``digitune.search``) or relative."""
    rooms = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own folder
                base = list(path.parent.parts)[: len(path.parent.parts) - (node.level - 1)]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "digitune" and len(parts) > 1:
                parts = parts[1:]
            if parts[0] in PACKAGES[1:]:
                rooms.add(parts[0])
    return rooms


def _bare_imports(tree: ast.Module) -> list[str]:
    """Absolute imports of a room without the ``digitune.`` root (``import models``, ``from search import x``)."""
    bare = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bare += [a.name for a in node.names if a.name.split(".")[0] in PACKAGES[1:]]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            bare += [node.module] if node.module.split(".")[0] in PACKAGES[1:] else []
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "find_spec") and node.args and isinstance(node.args[0], ast.Constant):
            name = node.args[0].value  # importlib.import_module("models._data") finds a user's models.py too
            bare += [name] if isinstance(name, str) and name.split(".")[0] in PACKAGES[1:] else []
    return bare


def _uninstalled_packages(root: Path) -> list[str]:
    """Package folders (with ``__init__.py``) that pyproject.toml's ``[tool.setuptools]`` does not install."""
    pyproject = root / "pyproject.toml"
    if not pyproject.exists():
        return []
    setuptools = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("setuptools", {})
    folders = {folder: name for name, folder in setuptools.get("package-dir", {}).items()}
    installed = set(setuptools.get("packages", []))
    missing = []
    for init in sorted(p for package in PACKAGES for p in (root / package).rglob("__init__.py")):
        parts = init.parent.relative_to(root).parts
        name = folders.get(parts[0], parts[0]) + "".join(f".{p}" for p in parts[1:])
        if name not in installed:
            missing.append(name)
    return missing


def _private_foreign(tree: ast.Module) -> int:
    """How many uses of a foreign library's private names a module holds."""
    count = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and not node.level):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for parts in (name.split(".") for name in names):
                private = parts[0] in FOREIGN and any(p.startswith("_") for p in parts[1:])
                if private or parts[:2] in (["keras", "src"], ["tensorflow", "python"]):
                    count += 1
        elif isinstance(node, ast.Attribute) and node.attr in FOREIGN_PRIVATE_ATTRS:
            receiver = node.value
            if not (isinstance(receiver, ast.Name) and receiver.id in PACKAGES):
                count += 1
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ATTR_CALLS:
            names = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
            count += sum(name in FOREIGN_PRIVATE_ATTRS for name in names)
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            chain = node.value
            while isinstance(chain, ast.Attribute):
                chain = chain.value
            if isinstance(chain, ast.Name) and chain.id in FOREIGN:
                count += 1
    return count


def measure(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """Today's offenders, by kind (modules, functions, private, arrows): {name: size}."""
    found: dict[str, dict[str, int]] = {"modules": {}, "functions": {}, "private": {}, "arrows": {},
                                        "bare imports": {}, "packages": {}}
    for name in _uninstalled_packages(root):
        found["packages"][name] = 1
    for folder in ("tests", "bench"):
        for path in sorted((root / folder).rglob("*.py")):
            for name in _bare_imports(ast.parse(path.read_text(encoding="utf-8"))):
                found["bare imports"][f"{path.relative_to(root)}: {name}"] = 1
    for path in modules(root):
        text = (root / path).read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            found["modules"][str(path)] = lines
        tree = ast.parse(text, filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found["functions"][f"{path}:{node.name}"] = length
        for room in _imported_rooms(tree, path) & FORBIDDEN.get(_room(path), set()):
            found["arrows"][f"{path} -> {room}"] = 1
        for name in _bare_imports(tree):
            found["bare imports"][f"{path}: {name}"] = 1
        if str(path) not in BOUNDARIES and (count := _private_foreign(tree)):
            found["private"][str(path)] = count
    return found


def problems(found: dict, allowed: dict, allowlist: str) -> list[str]:
    """One line per rule broken beyond the allowlist, and per allowlist entry that is stale."""
    what = {"modules": "lines", "functions": "lines", "private": "private foreign names"}
    hints = {"arrows": "models imports nothing of search or dashboard, search nothing of dashboard",
             "bare imports": "name the root: digitune.search, digitune.models, digitune.dashboard",
             "packages": "add it to [tool.setuptools] packages in pyproject.toml"}
    lines = []
    for kind, offenders in found.items():
        permitted = allowed.get(kind, {})
        for name, size in sorted(offenders.items()):
            if kind in hints and name not in permitted:
                lines.append(f"{kind}: {name} ({hints[kind]})")
            elif name not in permitted:
                lines.append(f"{kind}: {name} has {size} {what[kind]} (see .ci/check_layout.py for the limits)")
            elif size > permitted[name]:
                lines.append(f"{kind}: {name} grew to {size} {what.get(kind, '')}; its allowlist entry is {permitted[name]}")
        for name in sorted(set(permitted) - set(offenders)):
            lines.append(f"{kind}: {name} no longer offends; delete its entry from {allowlist}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--current", action="store_true", help="print today's offenders as allowlist TOML")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository to check (default: this one)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    found = measure(root)
    if args.current:
        for kind, offenders in found.items():
            print(f"[{kind}]")
            for name, size in sorted(offenders.items()):
                print(f'"{name}" = {size}')
            print()
        return 0
    allowlist = root / ALLOWLIST
    allowed = tomllib.loads(allowlist.read_text(encoding="utf-8")) if allowlist.exists() else {}
    broken = problems(found, allowed, str(ALLOWLIST))
    for line in broken:
        print(f"error: {line}", file=sys.stderr)
    if not broken:
        total = sum(len(v) for v in allowed.values())
        print(f"layout: {len(modules(root))} modules checked; {total} allowlisted offenders left")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
