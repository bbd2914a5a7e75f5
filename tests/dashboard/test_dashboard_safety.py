"""A dashboard on a network: files stay in the launch folder, a token guards the page, bombs are refused."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO, digitune_exe
from digitune.search import open_storage, queue_entries
from digitune.search.cli._dashboard import is_loopback

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from test_dashboard_launch import launch_page  # noqa: E402
from test_dashboard_model import saved_study, saved_trial_page  # noqa: E402,F401 (a study with saved models, trained once)

APP = str(REPO / "dashboard" / "app.py")
TOKEN = "correct-horse-battery-staple"


def _launch(at: AppTest) -> str:
    at.button(key="launch_button").click()
    at.run(timeout=60)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return " ".join(s.value for s in at.success)


@pytest.mark.slow
def test_study_names_that_look_like_paths_write_only_inside_the_launch_folder(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'db' / 'l.db'}"
    launches = tmp_path / "deep" / "launches"
    absolute = str(tmp_path / "abs")  # an absolute path as a name, e.g. /tmp/abs
    at = launch_page(monkeypatch, url, launches)
    at.text_input(key="launch_name").input("../../x")
    at.number_input(key="launch_trials").set_value(1)
    at.multiselect(key="launch_families").unselect("cnn")
    assert "Launched study '../../x' (1 trials)" in _launch(at)
    try:
        study_file = f'[study]\nname = "{absolute}"\ntrials = 1\n[data]\nsource = "digits"\nlimit = 300\n'
        at.file_uploader(key="launch_file").set_value(("abs.toml", study_file.encode(), "application/toml"))
        at.run(timeout=60)
        assert f"Launched study '{absolute}' (1 trials)" in _launch(at)
    finally:
        _stop_local_agents(at)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.toml"))
    assert [p.parent for p in written] == [Path("deep/launches")] * 2, written
    assert not (tmp_path / "x").exists() and not list(tmp_path.parent.glob("x-*.toml"))
    assert not list(tmp_path.glob("abs*")), "a file was written at the absolute path in the study name"
    names = {tomllib.loads((tmp_path / p).read_text())["study"]["name"] for p in written}
    assert names == {"../../x", absolute}  # the studies keep their names; only the files' names are made safe
    assert any(p.name.startswith("x-") for p in written), written
    assert not list(launches.glob(".*.tmp")), "a temp file was left behind"
    assert {e.name for e in queue_entries(open_storage(url))} == {"../../x", absolute}


def _stop_local_agents(at: AppTest) -> None:
    """Press every "Stop this agent" button the Launch page shows (Ctrl-C for the agent it started)."""
    keys = [b.key for b in at.button if b.key and b.key.startswith("stop_agent:")]
    for key in keys:
        at.button(key=key).click()
        at.run(timeout=120)
    assert keys, "the page started no agent"
    assert any("Stopped the agent" in i.value for i in at.info), [i.value for i in at.info]


def _bomb(side: int = 30_000) -> bytes:
    """A PNG of a few KiB that claims ``side`` x ``side`` pixels (900 million by default)."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def _broken_png() -> bytes:
    """A small PNG whose image data chunk claims 10 bytes too few: what follows it reads as a garbage chunk type."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 200).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    length = int.from_bytes(data[33:37], "big")  # the second chunk (IDAT), after the signature and IHDR
    data[33:37] = (length - 10).to_bytes(4, "big")
    return bytes(data)


@pytest.mark.slow
@pytest.mark.parametrize(("upload", "expected"), [
    # over twice Pillow's limit (an error), over it (a warning)
    (lambda: _bomb(30_000), "the image is too large to decode, a possible decompression bomb (Image size "
                            "(900000000 pixels) exceeds limit"),
    (lambda: _bomb(10_000), "the image is too large to decode, a possible decompression bomb (Image size "
                            "(100000000 pixels) exceeds limit"),
    (_broken_png, "not a readable PNG image (broken PNG file (chunk "),  # Pillow raises SyntaxError for it
], ids=["bomb-error", "bomb-warning", "broken-png"])
def test_a_bad_png_upload_gets_a_message_not_an_exception(saved_study, monkeypatch, upload, expected):  # noqa: F811
    at, number = saved_trial_page(saved_study, monkeypatch)
    data = upload()
    assert len(data) < 200_000
    at.file_uploader(key=f"upload:saved:{number}").set_value(("upload.png", data, "image/png"))
    at.run(timeout=60)
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(e.startswith(f"Cannot read that image: {expected}") for e in errors), errors


def test_with_a_token_the_page_shows_nothing_before_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITUNE_STORAGE", f"sqlite:///{tmp_path / 'secret-name.db'}")
    monkeypatch.setenv("DIGITUNE_DASHBOARD_TOKEN", TOKEN)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run(timeout=60)
    assert not at.exception, at.exception

    def shown() -> str:
        return " ".join(str(e.value) for kind in ("markdown", "caption", "info", "title", "error") for e in at.get(kind))

    assert not at.sidebar.radio and "secret-name" not in shown() and "Studies" not in shown()
    assert [t.label for t in at.text_input] == ["Token"]
    at.text_input[0].input("wrong")
    at.run(timeout=60)
    assert [e.value for e in at.error] == ["That is not the dashboard's token."]
    assert not at.sidebar.radio and "secret-name" not in shown()
    at.text_input[0].input(TOKEN)
    at.run(timeout=60)
    assert not at.exception, at.exception
    assert at.sidebar.radio and "secret-name" in shown() and not at.text_input
    at.run(timeout=60)  # signed in for the rest of the session
    assert at.sidebar.radio and not at.text_input


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(("host", "token", "expected"), [
    ("0.0.0.0", None, "warning: http://0.0.0.0:{port} is served to the network and the page has no login: anyone "
                      "who can reach it sees every study and can launch, stop and resume them; set "
                      "$DIGITUNE_DASHBOARD_TOKEN to a long random token"),
    ("0.0.0.0", TOKEN, "note: http://0.0.0.0:{port} is served to the network; the page asks for the token in "
                       "$DIGITUNE_DASHBOARD_TOKEN before it shows anything"),
    ("127.0.0.1", None, None),
    ("127.1", None, None),  # short for 127.0.0.1
    ("::ffff:127.0.0.1", None, None),  # 127.0.0.1, IPv4-mapped
])
def test_the_dashboard_command_warns_when_it_serves_the_network_without_a_token(tmp_path, host, token, expected):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DIGITUNE_DASHBOARD_TOKEN"}
    env.update({"DIGITUNE_STORAGE": f"sqlite:///{tmp_path / 'd.db'}", **({"DIGITUNE_DASHBOARD_TOKEN": token}
                                                                        if token else {})})
    log = tmp_path / "dashboard.log"
    with log.open("w") as handle:
        proc = subprocess.Popen([digitune_exe(), "dashboard", "--host", host, "--port", str(port)], cwd=tmp_path,
                                env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while b"streamlit" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():  # printed before Streamlit runs
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    lines = log.read_text().splitlines()
    assert lines[0] == f"dashboard for sqlite:///{tmp_path / 'd.db'} at http://{host}:{port} (Ctrl-C stops it)"
    if expected is None:
        assert not any(line.startswith(("warning:", "note:")) for line in lines), lines
    else:
        assert lines[1].startswith(expected.format(port=port)), lines
    assert token is None or token not in log.read_text()


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1", True), ("2130706433", True), ("0x7f.1", True), ("127.9.8.7", True),
    ("::1", True), ("[::1]", True), ("::ffff:127.0.0.1", True), ("localhost", True), ("LocalHost", True),
    ("0.0.0.0", False), ("0", False), ("::", False), ("", False), ("10.1", False), ("::ffff:10.0.0.1", False),
    ("::127.0.0.1", False), ("localhost.localdomain", False), ("127.0.0.1.nip.io", False), ("example.com", False),
    ("127.0.0.1 x", False),
])
def test_loopback_is_decided_on_the_address_the_server_binds(host, loopback):
    assert is_loopback(host) is loopback
