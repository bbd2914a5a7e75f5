"""search/_beat.py: the repeated call behind trial and agent heartbeats."""

import time

from digitune.search._beat import Beat


def _wait_for(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_beat_repeats_until_stopped_and_survives_a_failing_call():
    calls = []

    def beat():
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise RuntimeError("the database blinked")  # logged; the next beat still comes

    b = Beat(beat, lambda: 0.01, name="test-beat", now=True).start()
    assert _wait_for(lambda: len(calls) >= 4)
    b.stop()
    stopped_at = len(calls)
    time.sleep(0.1)
    assert len(calls) == stopped_at


def test_a_beat_that_does_not_start_now_waits_one_interval_first():
    calls = []
    b = Beat(lambda: calls.append(1), lambda: 60.0, name="test-beat", now=False).start()
    time.sleep(0.2)
    b.stop()  # stops within its wait, never having beaten
    assert calls == []
    now = Beat(lambda: calls.append(1), lambda: 60.0, name="test-beat", now=True).start()
    assert _wait_for(lambda: calls == [1])
    now.stop()
