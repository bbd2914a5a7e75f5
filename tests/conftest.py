"""Shared fixtures: small real data, tiny study files, the CLI's entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent  # the checkout: tests/ sits at its root

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# `digitune run` and `agent` start one worker per core by default; the tests that are not about
# the layout run one in-process worker (their output and seeds are those of one process).
# tests/test_workers.py clears this to test the default layout itself.
os.environ.setdefault("DIGITUNE_WORKERS", "1")

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
    from digitune.models import load_dataset

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


# --------------------------------------------------------------------------- storages (contract suite)

POSTGRES_ADMIN_ENV = "DIGITUNE_TEST_POSTGRES"
POSTGRES_ADMIN_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_admin_url() -> str:
    """The server tests make their databases on: ``$DIGITUNE_TEST_POSTGRES`` or the local ``test`` database."""
    return os.environ.get(POSTGRES_ADMIN_ENV) or POSTGRES_ADMIN_DEFAULT


def _postgres_connect(url: str):
    """A psycopg connection (autocommit) from a SQLAlchemy-style URL; skips the test if there is no server.

    A fresh server has no ``test`` database; its ``postgres`` database serves as well.
    """
    psycopg = pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (pip install 'psycopg[binary]')")
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    reason = "no database to connect to"
    for dbname in dict.fromkeys([parsed.database or "postgres", "postgres"]):
        try:
            return psycopg.connect(host=parsed.host or "127.0.0.1", port=parsed.port or 5432,
                                   user=parsed.username or "postgres", password=parsed.password,
                                   dbname=dbname, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if f'database "{dbname}" does not exist' not in str(exc):
                break
    pytest.skip(f"PostgreSQL is not reachable at {parsed.render_as_string(hide_password=True)} "
                f"(set ${POSTGRES_ADMIN_ENV} to another server): {reason}")


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database for this test (``digitune_test_<random>``), dropped afterwards."""
    import secrets

    from sqlalchemy.engine import make_url

    admin = _postgres_admin_url()
    name = f"digitune_test_{secrets.token_hex(6)}"
    with _postgres_connect(admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with _postgres_connect(admin) as conn:  # FORCE: a worker that is still connected must not keep it
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path: Path) -> str:
    """The same test over each storage digitune supports: a SQLite file and a PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return request.getfixturevalue("postgres_url")


# --------------------------------------------------------------------------- a private PostgreSQL server


@pytest.fixture(scope="session")
def private_postgres():
    """A PostgreSQL server of the tests' own on a free port of 127.0.0.1 (``tests/_pgserver.py``).

    For tests that stop and restart the server or cut it off; each test makes its own database
    on it (``create_database``). Skipped where no server binaries are installed. A test that
    stops it must start it again.
    """
    from _pgserver import PgServer

    server = PgServer()
    try:
        yield server
    finally:
        server.destroy()


def wait_for(condition, timeout: float = 120, what: str = "condition"):
    """Poll ``condition()`` every 0.3 s until it returns something true (returned), else fail the test."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")
