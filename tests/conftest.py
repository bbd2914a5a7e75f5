"""Shared fixtures: small real data, tiny study files, the CLI's entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

TINY_STUDY = """
[study]
name = "{name}"
trials = {trials}
sampler = "{sampler}"
pruner = "{pruner}"
seed = 7

[data]
source = "digits"
limit = 300

[space]
family = {family}
epochs = {{low = 1, high = 3}}
learning_rate = {{low = 3e-3, high = 2e-2, log = true}}
batch_size = [32, 64]

[space.mlp]
hidden_layers = {{low = 1, high = 2}}
units = {{low = 16, high = 64, log = true}}

[space.cnn]
blocks = {blocks}
filters = {{low = 4, high = 8}}
kernel_size = {kernel_size}
padding = "{padding}"
dense_units = 16
"""


def write_study(folder: Path, name: str = "tiny", *, trials: int = 4, sampler: str = "tpe",
                pruner: str = "hyperband", family: str = '["mlp", "cnn"]', blocks: int = 1,
                kernel_size: int = 3, padding: str = "same") -> Path:
    """A study file that trains small models on 300 digits for 1 to 3 epochs."""
    path = folder / f"{name}.toml"
    path.write_text(TINY_STUDY.format(name=name, trials=trials, sampler=sampler, pruner=pruner, family=family,
                                      blocks=blocks, kernel_size=kernel_size, padding=padding))
    return path


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    return write_study(tmp_path)


@pytest.fixture(scope="session")
def small_digits():
    from models import load_dataset

    return load_dataset("digits", limit=300)


def digitune_exe() -> str:
    """The installed ``digitune`` console script, next to this Python or on PATH."""
    candidate = Path(sys.executable).parent / "digitune"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("digitune")
    if not found:
        pytest.fail("the digitune console script is not installed; run `pip install -e .`")
    return found


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
            ) -> subprocess.CompletedProcess:
    """Run ``digitune ARGS`` through its entry point, as a user would."""
    full_env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    full_env.update(env or {})
    return subprocess.run([digitune_exe(), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
