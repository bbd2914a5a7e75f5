"""The dashboard's bulk-SQL trial reader gives exactly what Optuna's storage API gives.

Each test runs over a SQLite file and a fresh PostgreSQL database (``storage_url`` in
conftest; the PostgreSQL half skips with the reason where no server answers). The studies
hold every kind of distribution, infinite values and NaN intermediate values where Optuna
allows them, nested user attributes, constraints, every trial state and a multi-objective
study; the reader's trials and records must equal the API's, after a cold read and after
refreshes while trials start, finish and arrive.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from digitune.search import open_storage

INF = float("inf")
NAN = float("nan")
SPACE = {
    "family": CategoricalDistribution(["mlp", "cnn"]),
    "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 0.5, step=0.125),
    "units": IntDistribution(16, 512, log=True),
    "epochs": IntDistribution(1, 9, step=2),
    "mixed": CategoricalDistribution([None, "relu", 3, 2.5, True]),
    "width": FloatDistribution(-1.0, 1.0),
}


def canon(value: Any) -> Any:
    """``value`` with NaN made comparable (NaN != NaN) and containers walked.

    Dicts compare whatever their order, as Python's do: the API's order of attributes follows
    the database's query plan. The order of parameters, which Optuna fixes, is checked apart.
    """
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return sorted(((repr(k), canon(v)) for k, v in value.items()), key=lambda kv: kv[0])
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    if isinstance(value, FrozenTrial):
        return [(k, canon(v)) for k, v in sorted(vars(value).items())]
    return value


def typed(value: Any) -> Any:
    """``canon`` that also tells 1 from 1.0 and True from 1 (a parameter must keep its type)."""
    if isinstance(value, dict):
        return [(typed(k), typed(v)) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [typed(v) for v in value]
    return (type(value).__name__, canon(value))


def assert_same_trials(got: list[FrozenTrial], expected: list[FrozenTrial]) -> None:
    assert [t.number for t in got] == [t.number for t in expected]
    for a, b in zip(got, expected):
        assert canon(a) == canon(b), f"trial {b.number} differs"
        assert typed(a.params) == typed(b.params), f"trial {b.number}: parameter types or order differ"
        assert typed(a.values) == typed(b.values)


def _trial(number: int, *, state: TrialState = TrialState.COMPLETE, value: Any = None, values: Any = None,
           constraints: dict[str, float] | list[float] | None = None,
           steps: dict[int, float] | None = None) -> FrozenTrial:
    """A trial as ``add_trials`` stores it; ``constraints`` as ``set_constraint`` keeps them (a list: the old form)."""
    params = {"family": "mlp" if number % 2 else "cnn", "learning_rate": 10 ** (-1 - number % 3),
              "dropout": 0.125 * (number % 5), "units": 16 * (1 + number % 8), "epochs": 1 + 2 * (number % 5),
              "mixed": SPACE["mixed"].choices[number % 5], "width": -1.0 + number / 50}
    attrs = {"family": params["family"], "curves": {"val_accuracy": [0.5, 0.75, NAN][: 1 + number % 3],
                                                    "loss": [INF, 1e-300, -0.0]},
             "note": f"trial {number} ✓ “quoted”", "nested": {"a": [1, {"b": None}], "t": True},
             "params_count": 1000 + number, "empty": {}}
    trial = create_trial(state=state, value=value, values=values, params=params, distributions=dict(SPACE),
                         user_attrs=attrs, intermediate_values=steps,
                         system_attrs=_constraint_attrs(constraints))
    start = dt.datetime(2030, 3, 30, 23, 59, 59, 999_999) + dt.timedelta(minutes=7 * number)
    trial.datetime_start = start
    if state.is_finished():
        trial.datetime_complete = start + dt.timedelta(seconds=number, microseconds=123)
    return trial


def _constraint_attrs(constraints: dict[str, float] | list[float] | None) -> dict[str, Any] | None:
    if constraints is None:
        return None
    if isinstance(constraints, list):
        return {"constraints": constraints}
    return {f"constraints:{key}": value for key, value in constraints.items()}


def build(url: str) -> optuna.storages.RDBStorage:
    """A single-objective study, a constrained two-objective one and a decoy study, in one storage."""
    storage = open_storage(url, heartbeat=False)
    decoy = optuna.create_study(study_name="decoy", storage=storage)
    decoy.add_trials([_trial(0, value=1.0)])
    single = optuna.create_study(study_name="single", storage=storage, direction="maximize")
    single.add_trials([
        _trial(0, value=0.5, steps={0: 0.25, 1: 0.5}),
        _trial(1, value=INF, steps={0: NAN, 1: INF, 2: -INF}),
        _trial(2, value=-INF),
        _trial(3, state=TrialState.PRUNED, steps={0: 0.1, 4: 0.2}),
        _trial(4, state=TrialState.FAIL),
        _trial(5, value=0.0, steps={}),
    ])
    single.add_trial(create_trial(state=TrialState.RUNNING))  # no parameters, no start recorded by hand
    running = single.ask(dict(SPACE))
    running.report(0.3, 0)
    running.report(NAN, 1)
    running.set_user_attr("family", "cnn")
    single.enqueue_trial({"family": "cnn", "epochs": 3})  # waiting, with its fixed parameters
    pareto = optuna.create_study(study_name="pareto", storage=storage, directions=["maximize", "minimize"])
    pareto.add_trials([
        _trial(0, values=[0.9, 1000.0], constraints={"max_params": -1.0, "latency": 0.0}),
        _trial(1, values=[0.95, INF], constraints={"max_params": 2.5}),
        _trial(2, values=[-INF, 10.0], constraints=[0.0]),
        _trial(3, state=TrialState.PRUNED, steps={0: 0.4}),
        _trial(4, values=[0.97, 5000.0], constraints={"max_params": -3.0}),
        _trial(5, values=[0.5, 5.0], constraints={"max_params": 7.0}),
    ])
    return storage


def study_id(storage, name: str) -> int:
    return storage.get_study_id_from_name(name)


# --------------------------------------------------------------------------- a cold read


@pytest.mark.parametrize("name", ["single", "pareto", "decoy"])
def test_sql_reads_the_same_trials_as_optuna(storage_url, name):
    from digitune.dashboard._sql import read_trials_sql

    storage = build(storage_url)
    sid = study_id(storage, name)
    expected = storage.get_all_trials(sid, deepcopy=False)
    got = read_trials_sql(storage.engine, sid)
    assert_same_trials(got, expected)
    states = {t.state for t in got}
    if name == "single":
        assert states == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                          TrialState.WAITING}
        assert [t.value for t in got[1:3]] == [INF, -INF] and math.isnan(got[1].intermediate_values[0])
        assert got[0].params["mixed"] is None and got[4].params["mixed"] is True
        assert isinstance(got[0].params["units"], int) and got[0].datetime_start.microsecond == 999_999
    if name == "pareto":
        assert got[1].values == [0.95, INF] and got[1].constraints == {"max_params": 2.5}
        assert got[2].constraints == {"0": 0.0}


def test_records_from_sql_equal_records_from_the_api(storage_url):
    from digitune.dashboard import Reader, learning_curves, study_row

    build(storage_url)
    fast, slow = Reader.open(storage_url), Reader.open(storage_url, sql=False)
    assert fast.sql and not slow.sql
    for name in ("single", "pareto"):
        a, b = fast.study(name), slow.study(name)
        assert_same_trials(a.trials, b.trials)
        assert canon(a.records) == canon(b.records)
        assert canon(learning_curves(a)) == canon(learning_curves(b))
        assert canon(study_row(a)) == canon(study_row(b))
        assert a.pareto_numbers == b.pareto_numbers
    assert fast.study("pareto").pareto_numbers == [0, 2, 4]  # trials 1 and 5 are over their constraint


def test_datetimes_are_local_time_as_optuna_gives_them(storage_url, monkeypatch):
    """Optuna stores naive UTC and returns naive local time: so must the SQL reader, off UTC too."""
    from digitune.dashboard._sql import read_trials_sql

    monkeypatch.setenv("TZ", "America/St_Johns")  # UTC-3:30 (or -2:30): a whole-hour slip would show
    time.tzset()
    try:
        storage = build(storage_url)
        sid = study_id(storage, "single")
        expected = storage.get_all_trials(sid, deepcopy=False)
        got = read_trials_sql(storage.engine, sid)
        assert [(t.datetime_start, t.datetime_complete) for t in got] == \
               [(t.datetime_start, t.datetime_complete) for t in expected]
        assert got[0].datetime_start == dt.datetime(2030, 3, 30, 23, 59, 59, 999_999)
    finally:
        monkeypatch.undo()
        time.tzset()


# --------------------------------------------------------------------------- refreshes


def test_refresh_reads_changes_as_optuna_sees_them(storage_url, monkeypatch):
    import digitune.dashboard._sql
    from digitune.dashboard import Reader

    storage = build(storage_url)
    reader = Reader.open(storage_url)
    study = optuna.load_study(study_name="single", storage=storage)

    def check() -> None:
        data = reader.study("single")
        assert_same_trials(data.trials, study.get_trials(deepcopy=False))
        fresh = Reader.open(storage_url, sql=False).study("single")
        assert canon(data.records) == canon(fresh.records)

    check()
    reads = reader.reads
    check()
    assert reader.reads - reads == 3  # only the running and waiting trials were read again
    running = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING][-1]
    study.tell(running.number, 0.875)  # a running trial finishes
    waiting = study.ask()  # the waiting trial starts, with its enqueued parameters
    waiting.report(-INF, 0)
    study.add_trials([_trial(10, value=0.25, steps={0: NAN})])  # a new trial arrives
    check()
    study.tell(waiting, state=TrialState.PRUNED)
    # Beyond _MAX_ID_LIST unfinished trials the refresh reads from the oldest of them on: still exact.
    monkeypatch.setattr(digitune.dashboard._sql, "_MAX_ID_LIST", 0)
    for _ in range(3):
        study.enqueue_trial({"epochs": 5})
    check()
    study.add_trials([_trial(11, state=TrialState.FAIL)])
    check()
    assert [t.state for t in reader.study("single").trials][-4:] == [TrialState.WAITING] * 3 + [TrialState.FAIL]


def test_unfinished_ids_and_new_trials_only(storage_url):
    from digitune.dashboard import read_trials

    storage = build(storage_url)
    sid = study_id(storage, "single")
    every = storage.get_all_trials(sid, deepcopy=False)
    after = every[4]._trial_id
    unfinished = [t._trial_id for t in every if not t.state.is_finished()]
    for sql in (True, False):
        got = read_trials(storage, sid, unfinished_ids=unfinished + [every[1]._trial_id], after_trial_id=after,
                          sql=sql)
        assert [t.number for t in got] == [1, 5, 6, 7, 8]
        assert_same_trials(got, [every[n] for n in (1, 5, 6, 7, 8)])
    assert read_trials(storage, sid, after_trial_id=every[-1]._trial_id) == []


# --------------------------------------------------------------------------- read-only, other storages


def test_the_sql_reader_leaves_no_transaction_open_and_writes_nothing(storage_url):
    import sqlalchemy

    from digitune.dashboard import Reader

    storage = build(storage_url)
    storage.engine.dispose()
    reader = Reader.open(storage_url)
    before = _snapshot(storage_url)
    for name in ("single", "pareto", "decoy"):
        reader.study(name)
        reader.study(name)
    assert _snapshot(storage_url) == before
    engine = reader.storage.engine
    if engine.dialect.name == "postgresql":
        with sqlalchemy.create_engine(storage_url).connect() as conn:
            stuck = conn.execute(sqlalchemy.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%'")).scalar()
        assert stuck == 0
    assert engine.pool.checkedout() == 0


def _snapshot(url: str) -> list[tuple]:
    """Every row of Optuna's trial tables, to show that reading changed nothing."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    tables = ("trials", "trial_params", "trial_values", "trial_user_attributes", "trial_system_attributes",
              "trial_intermediate_values", "studies", "study_user_attributes")
    try:
        with engine.connect() as conn:
            return [tuple(conn.execute(sqlalchemy.text(f"SELECT * FROM {t} ORDER BY 1")).all()) for t in tables]
    finally:
        engine.dispose()


def test_other_storages_are_read_through_the_api():
    from digitune.dashboard import Reader

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="mem")
    study.add_trials([_trial(0, value=1.0), _trial(1, state=TrialState.PRUNED, steps={0: NAN})])
    data = Reader(storage).study("mem")
    assert_same_trials(data.trials, study.get_trials(deepcopy=False))
    assert [r["state"] for r in data.records] == ["complete", "pruned"]


def test_sqlite_file_is_untouched(tmp_path):
    """On SQLite the file itself, not just its rows, stays as it was (no WAL checkpoint, no journal)."""
    import hashlib

    from digitune.dashboard import Reader

    url = f"sqlite:///{tmp_path / 'ro.db'}"
    build(url).engine.dispose()
    path = tmp_path / "ro.db"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    reader = Reader.open(url)
    for name in ("single", "pareto"):
        reader.study(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert not os.path.exists(str(path) + "-journal")
