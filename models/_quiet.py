"""TensorFlow's start-up notices, kept off the console when its logs are asked to be quiet.

Why it is built this way: docs/internals.md, "models/_quiet.py".
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from typing import Iterator

NOTICES = (
    b"All log messages before absl::InitializeLog() is called are written to STDERR",
    b"oneDNN custom operations are on",
    b"To enable the following instructions:",  # the second line of an optimized-build notice
)
# A TensorFlow (absl) log record: severity, date, time, thread, file:line]
_RECORD = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}


def _shown(line: bytes, level: int, notices: tuple[bytes, ...]) -> bool:
    """Whether ``line`` passes: not one of ``notices``, nor a TensorFlow log record below ``level``."""
    record = _RECORD.match(line)
    if record is not None and _SEVERITY[record.group(1)] < level:
        return False
    return not any(notice in line for notice in notices)


@contextlib.contextmanager
def filtered_stderr(notices: tuple[bytes, ...] = NOTICES) -> Iterator[None]:
    """Hold back what is written to file descriptor 2 meanwhile; then pass on all lines ``_shown`` lets pass."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            level = _log_level()
            kept = [line for line in held.read().splitlines(keepends=True) if _shown(line, level, notices)]
            if kept:
                with contextlib.suppress(OSError):
                    os.write(2, b"".join(kept))


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as usual, and runs its package ``__init__`` inside ``filtered_stderr``."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow" or _log_level() < 1:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            self._loader.exec_module(module)
            with contextlib.suppress(Exception):  # TensorFlow looks for devices (cuInit) when first asked
                module.config.list_physical_devices()  # sets nothing up: thread and device settings stay open

    def __getattr__(self, name):  # get_resource_reader, is_package, ... as the wrapped loader has them
        return getattr(self._loader, name)


def _log_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def install() -> None:
    """Filter TensorFlow's start-up notices from now on (once per process; harmless after its import)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder())
