"""The ``digitune`` command line: thin commands over ``digitune.search`` and ``digitune.models``.

Each command parses its options, calls one library function and prints (a table, or
``--json`` through ``_common.print_json``). A user error (bad study file, bad data,
unreachable storage, unknown study) is one line on stderr and exit code 2; anything else is
a bug and exits 1. ``COMMANDS`` is the registry: every command, in ``--help``'s order.
"""

from __future__ import annotations

import os

# Before anything imports TensorFlow: quiet its C++ logs. oneDNN stays at TensorFlow's default
# (on, on x86): 28x28 convolutions train about 3.5x faster with it, and the same seed still gives
# the same numbers run after run (`TF_ENABLE_ONEDNN_OPTS=0` turns it off; see models/_quiet.py).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from . import _admin, _dashboard, _final, _queue, _read, _run, _scale  # noqa: E402
from ._common import app  # noqa: E402

COMMANDS = (  # (name, function, hidden)
    ("run", _run.run, False),
    ("worker", _run.worker, False),
    ("predict", _read.predict, False),
    ("studies", _read.studies, False),
    ("show", _read.show, False),
    ("best", _read.best, False),
    ("export", _admin.export, False),
    ("delete", _admin.delete, False),
    ("doctor", _admin.doctor, False),
    ("export-model", _final.export_model, False),
    ("dashboard", _dashboard.dashboard, False),
    ("storage-proxy", _scale.storage_proxy, False),
    ("submit", _queue.submit, False),
    ("queue", _queue.show_queue, False),
    ("stop", _queue.stop, False),
    ("resume", _queue.resume, False),
    ("agent", _queue.agent, False),
    ("agent-process", _queue.agent_process, True),
)
for _name, _command, _hidden in COMMANDS:
    app.command(_name, hidden=_hidden)(_command)


def main() -> None:
    app()


__all__ = ["COMMANDS", "app", "main"]
