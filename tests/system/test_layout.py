"""The size-and-arrows checker (.ci/check_layout.py): the repository passes, and each rule catches its break."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

CHECKER = REPO / ".ci" / "check_layout.py"


def _check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECKER), "--root", str(root)], capture_output=True, text=True)


@pytest.fixture
def copy(tmp_path):
    """The product packages and the allowlist, copied to a folder a case may break."""
    for folder in ("digitune", "search", "models", "dashboard", ".ci"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_repository_keeps_its_sizes_and_arrows():
    result = _check(REPO)
    assert result.returncode == 0, result.stderr
    assert "modules checked" in result.stdout


def test_models_importing_search_is_a_wrong_arrow(copy):
    (copy / "models" / "_wrong.py").write_text("from search import run_study\n")
    result = _check(copy)
    assert result.returncode == 1
    assert "error: arrows: models/_wrong.py -> search" in result.stderr


def test_a_relative_import_up_into_the_dashboard_is_a_wrong_arrow(copy):
    (copy / "search" / "_wrong.py").write_text("from ..dashboard import app\n")
    assert "search/_wrong.py -> dashboard" in _check(copy).stderr


def test_a_long_function_and_a_long_module_are_named_with_their_size(copy):
    body = "".join(f"    x{i} = {i}\n" for i in range(61))
    (copy / "search" / "_long.py").write_text("def long():\n" + body + "\n" * 400)
    stderr = _check(copy).stderr
    assert "functions: search/_long.py:long has 62 lines" in stderr
    assert "modules: search/_long.py has 462 lines" in stderr


def test_private_optuna_names_outside_a_boundary_are_caught(copy):
    (copy / "search" / "_peek.py").write_text("def peek(study):\n    return study._storage\n")
    assert "private: search/_peek.py has 1 private foreign names" in _check(copy).stderr


def test_an_allowlisted_offender_may_not_grow_and_a_mended_one_must_leave_the_list(copy):
    (copy / "search" / "_big.py").write_text("x = 1\n" * 450)
    (copy / ".ci" / "layout_allowlist.toml").write_text('[modules]\n"search/_big.py" = 420\n"search/_spec.py" = 500\n')
    stderr = _check(copy).stderr
    assert "modules: search/_big.py grew to 450 lines; its allowlist entry is 420" in stderr
    assert "modules: search/_spec.py no longer offends; delete its entry" in stderr


def test_an_import_without_the_digitune_root_is_caught_in_tests_too(copy):
    (copy / "tests").mkdir()
    (copy / "tests" / "test_x.py").write_text("import models\nfrom search._spec import load_spec\n"
                                              "import importlib\nimportlib.import_module('dashboard._data')\n")
    stderr = _check(copy).stderr
    assert "bare imports: tests/test_x.py: models (name the root" in stderr
    assert "bare imports: tests/test_x.py: search._spec" in stderr
    assert "bare imports: tests/test_x.py: dashboard._data" in stderr


def test_a_package_folder_pyproject_does_not_install_is_caught(copy):
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    (copy / "search" / "unlisted").mkdir()
    (copy / "search" / "unlisted" / "__init__.py").write_text("")
    assert "packages: digitune.search.unlisted (add it to [tool.setuptools] packages" in _check(copy).stderr


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_package_digitune(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel here needs setuptools in this Python")
    source = tmp_path / "source"  # setuptools writes build/ beside the project: a copy keeps the checkout clean
    for name in ("digitune", "search", "models", "dashboard"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    import zipfile

    (wheel,) = tmp_path.glob("digitune-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"digitune", wheel.name.split("-py")[0] + ".dist-info"}
    for room in ("search/cli/_read.py", "models/_train.py", "dashboard/app.py", "__main__.py"):
        assert f"digitune/{room}" in names


def test_every_stored_key_in_the_old_database_has_its_owner():
    """Each user attribute a digitune database holds is named in search/_schema.py (the stored schema's owner)."""
    import sqlite3

    from digitune.search import _schema

    declared = {value for name, value in vars(_schema).items() if name.endswith("_ATTR")} | set(_schema.TRIAL_ATTRS)
    fixture = REPO / "tests" / "fixtures" / "old-db" / "studies.db"
    with sqlite3.connect(f"file:{fixture}?mode=ro&immutable=1", uri=True) as db:
        keys = {k for (k,) in db.execute("SELECT key FROM trial_user_attributes UNION SELECT key FROM "
                                          "study_user_attributes WHERE study_id NOT IN (SELECT study_id FROM "
                                          "studies WHERE study_name = ?)", (_schema.AGENTS_STUDY,))}
    assert keys and keys <= declared, sorted(keys - declared)
