"""A trial another worker failed as stale (its heartbeat stopped during an outage) while its own worker finished it.

Found by a team trial: four agents, the database down for 35 s with a 10 s grace period; the
first agent back failed the others' trials, and one of them then crashed telling its result
(``UpdateFinishedTrialError``: the trial was failed between ``tell``'s look at its state and
its write; ``_tell`` now reads the trial back instead). That window cannot be forced from one
process; this test holds what can be: a late result is dropped, the failure stands, and the
retry does not inherit the failed trial's reason (it did: a COMPLETE retry showed "no heartbeat").
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from digitune.search._claim import fail_stale_trials, is_stale_failure
from digitune.search.loop._trials import _tell
from digitune.search.storage._open import open_storage


def test_a_result_told_after_another_worker_failed_the_trial_is_dropped(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setenv("DIGITUNE_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("DIGITUNE_GRACE_PERIOD", "1")
    mine = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    trial = mine.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    mine._storage.record_heartbeat(trial._trial_id)  # then this worker loses the database: no more beats
    time.sleep(2.5)
    other = optuna.load_study(study_name="s", storage=open_storage(url))  # another worker, back first
    fail_stale_trials(other)

    frozen = _tell(mine, trial, 0.9)  # the result arrives late: no exception, the failure stands
    assert frozen.state == TrialState.FAIL and is_stale_failure(frozen)
    retry = [t for t in other.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].params == trial.params
    assert "fail_reason" not in retry[0].user_attrs  # the retry has not failed
