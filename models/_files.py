"""Files written for the user: a temporary file beside the target, renamed into place when complete.

Why it is built this way: docs/internals.md, "models/_files.py".
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from pathlib import Path
from typing import IO, Iterator

_TEMP = re.compile(r"^\..+\.tmp-[0-9a-f]{8}(\.[^.]+)?$")


def _create_beside(target: Path) -> Path:
    """Create an empty, new temporary file beside ``target`` (mode as the umask gives, like ``open``)."""
    while True:
        temp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}{target.suffix}")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temp
        except FileExistsError:
            continue


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _real_target(target: Path) -> Path:
    """The file a write to ``target`` should replace: a link's own target; refused if not a regular file.

    Renaming over a symbolic link would replace the link, and over a device, named pipe or
    socket would replace the node itself (``-o /dev/null`` as root): those are refused.
    """
    real = Path(os.path.realpath(target))
    if real.exists() and not real.is_file():
        kind = "a folder" if real.is_dir() else "a device, named pipe or socket"
        raise OSError(errno.EINVAL, f"{kind}, not a regular file; give a file path")
    return real


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` to write; when the block ends well, it replaces ``target``.

    The temporary name keeps ``target``'s suffix (``.name.tmp-1a2b3c4d.keras``), for writers that
    insist on one, such as Keras' ``model.save``. The folder must exist. On any
    exception (``KeyboardInterrupt`` too) the temporary file is removed and ``target`` is untouched.
    """
    target = _real_target(Path(target))
    temp = _create_beside(target)
    try:
        yield temp
        _fsync(temp)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    with contextlib.suppress(OSError):  # the rename itself to disk; not every file system allows it
        _fsync(target.parent, directory=True)


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open(target, mode, **kwargs)`` through ``atomic_path``: ``target`` appears only once fully written."""
    with atomic_path(target) as temp, open(temp, mode, **kwargs) as handle:
        yield handle


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named as ``atomic_path``'s temporary files are (one a killed process left)."""
    return bool(_TEMP.match(Path(path).name))
