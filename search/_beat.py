"""A beat: a call repeated every few seconds on a daemon thread, for trial and agent heartbeats."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from .storage._reconnect import passthrough

_logger = logging.getLogger("digitune")


class Beat:
    """Calls ``beat`` every ``interval()`` seconds (first at once if ``now``) until ``stop``.

    A failed beat is logged and the next one tried: the grace periods cover a few missed
    beats, and a lost database is not waited for here (``passthrough``).
    """

    def __init__(self, beat: Callable[[], None], interval: Callable[[], float], *, name: str, now: bool) -> None:
        self._beat, self._interval, self._now = beat, interval, now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Beat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        with passthrough():
            if not self._now and self._stop.wait(self._interval()):
                return
            while True:
                try:
                    self._beat()
                except Exception as exc:
                    _logger.debug("heartbeat failed: %s", exc)
                if self._stop.wait(self._interval()):
                    return
