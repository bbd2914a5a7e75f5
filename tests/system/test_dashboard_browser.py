"""``digitune dashboard`` in a real browser: Debian's Chromium, headless, driven by Playwright.

Starts the command through its installed entry point on a free loopback port, opens
every page, waits for Streamlit to finish running it, takes a screenshot (into the
test's tmp folder) and fails on any exception box the app shows.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import digitune_exe
from _dashboard_db import build_dashboard_db

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PAGES = [
    ("studies", "?page=Studies", "Studies"),
    ("study-history", "?page=Study&study=tiny", "Study tiny"),
    ("study-curves", "?page=Study&study=tiny&tab=Curves", "Study tiny"),
    ("study-families", "?page=Study&study=tiny&tab=MLP+vs+CNN", "Study tiny"),
    ("study-pareto", "?page=Study&study=pareto&tab=Pareto", "Study pareto"),
    ("study-trials", "?page=Study&study=tiny&tab=Trials", "Study tiny"),
    ("trial", "?page=Trial&study=tiny", "Trial"),
    ("compare", "?page=Compare", "Compare studies"),
    ("queue", "?page=Queue", "Queue"),
    ("launch", "?page=Launch", "Launch a study"),
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def playwright_api():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    return sync_playwright


@pytest.fixture(scope="session")
def dashboard_db(tmp_path_factory, small_digits):
    return build_dashboard_db(tmp_path_factory.mktemp("dashboard"), small_digits)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(dashboard_db, tmp_path):
    """``digitune dashboard`` on the prepared studies; yields its base URL, stops it afterwards."""
    port = free_port()
    log = (tmp_path / "dashboard.log").open("w")
    env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_STORAGE"}
    proc = subprocess.Popen([digitune_exe(), "dashboard", "--storage", dashboard_db.url, "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"digitune dashboard exited with {proc.returncode}:\n"
                            f"{(tmp_path / 'dashboard.log').read_text()}")
            try:
                with urllib.request.urlopen(base + "_stcore/health", timeout=2) as response:
                    if response.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the dashboard did not answer /_stcore/health within 90 s")
            time.sleep(0.3)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "dashboard.log").read_text()
    assert f"dashboard for {dashboard_db.url} at {base.rstrip('/')}" in output
    assert proc.returncode == 0, output  # Ctrl-C stops the server cleanly


def test_every_page_renders_in_chromium_without_exceptions(server, playwright_api, dashboard_db, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with playwright_api() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            for name, query, title in PAGES:
                page.goto(server + query)
                page.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
                page.wait_for_selector("h1", timeout=60_000)
                if name not in ("studies", "study-trials", "queue", "launch"):  # charts: wait until Plotly drew them
                    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
                wait_until_idle(page)
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                headings = page.locator("h1").all_inner_texts()
                assert any(h.strip().startswith(title) for h in headings), (name, headings)
                errors = page.locator('[data-testid="stException"]')
                assert errors.count() == 0, (name, errors.all_inner_texts())
        finally:
            browser.close()
    assert sorted(p.name for p in shots.iterdir()) == sorted(f"{name}.png" for name, _, _ in PAGES)
    dashboard_db.assert_unchanged()


def wait_until_idle(page, timeout_s: float = 60) -> None:
    """Wait until Streamlit shows no "running" status for half a second in a row."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 0.5:
            return
        page.wait_for_timeout(100)
    pytest.fail("the app kept running for more than a minute")


def test_dashboard_help_and_defaults(tmp_path):
    from conftest import run_cli

    result = run_cli("dashboard", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--host" in result.stdout and "127.0.0.1" in result.stdout and "8501" in result.stdout


def test_a_password_stays_off_the_command_line():
    from digitune.search.cli._dashboard import streamlit_command

    command, env = streamlit_command("postgresql+psycopg://u:s3cret@db/x", "127.0.0.1", 8501)
    assert not any("s3cret" in part for part in command) and env["DIGITUNE_STORAGE"].endswith("@db/x")
    command, env = streamlit_command("sqlite:///a.db", "127.0.0.1", 9000)
    assert "--storage" not in command and env["DIGITUNE_STORAGE"] == "sqlite:///a.db"
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert command[command.index("--server.port") + 1] == "9000"
    assert command[1:5] == ["-P", "-m", "streamlit", "run"] and command[5].endswith(os.path.join("dashboard", "app.py"))
    assert shutil.which(command[0]) or Path(command[0]).exists()
