"""Reading a study's trials straight from Optuna's RDB tables, for the dashboard's refreshes.

One SELECT per table, read-only, on one connection that commits nothing and is given back
before any decoding; every value decodes as Optuna's ``RDBStorage`` decodes it
(distributions with ``json_to_distribution``, values with the models' own ``stored_repr_to_*``,
datetimes from naive UTC to naive local time). Any other storage goes through Optuna's API.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial

from digitune.search._optuna_private import rdb_models, trial_id as id_of, trials_after

_SCHEMA_CHANGED = (ImportError, AttributeError, KeyError, sqlalchemy.exc.SQLAlchemyError)


def read_trials(storage: BaseStorage, study_id: int, *, unfinished_ids: Iterable[int] = (),
                after_trial_id: int = -1, sql: bool = True) -> list[FrozenTrial]:
    """Trials of ``study_id`` that can have changed: those in ``unfinished_ids`` and those after ``after_trial_id``.

    On Optuna's RDB storage (SQLite, PostgreSQL, MySQL) this is a few plain SELECTs over Optuna's
    tables, decoded as Optuna decodes them (:func:`read_trials_sql`); with ``sql=False``, or on
    any other storage (the gRPC proxy, in memory), it goes through Optuna's storage API: just
    those rows on the RDB storage (``RDBStorage._get_trials``, the method behind Optuna's own
    cached storage), the whole study elsewhere. Both give equal :class:`FrozenTrial` objects.
    """
    if isinstance(storage, RDBStorage):
        if sql:
            try:
                return read_trials_sql(storage.engine, study_id, unfinished_ids=unfinished_ids,
                                       after_trial_id=after_trial_id)
            except _SCHEMA_CHANGED:  # a future Optuna renamed a table or column: take its own API
                pass
        try:
            after = trials_after(storage, study_id, set(unfinished_ids), after_trial_id)
            if after is not None:
                return after
        except TypeError:  # a future Optuna changed the private signature: read everything
            pass
    trials = storage.get_all_trials(study_id, deepcopy=False)
    if after_trial_id < 0:
        return trials
    wanted = set(unfinished_ids)
    return [t for t in trials if id_of(t) > after_trial_id or id_of(t) in wanted]


# Beyond this many unfinished trials, a refresh asks for every trial from the oldest of them on
# and drops the finished ones itself, rather than sending a list of ids SQLite may refuse.
_MAX_ID_LIST = 500


def read_trials_sql(engine: Any, study_id: int, *, unfinished_ids: Iterable[int] = (),
                    after_trial_id: int = -1) -> list[FrozenTrial]:
    """``read_trials`` on Optuna's RDB schema: one SELECT per table, read-only, ordered by trial id.

    One connection that commits nothing, given back before any decoding; a trial read as
    unfinished is read again at the next refresh, so the SELECTs need no common snapshot.
    Everything decodes as Optuna's ``RDBStorage`` decodes it (see the module's docstring).
    """
    models = rdb_models()
    trials_t = models.TrialModel.__table__
    wanted = sorted({int(i) for i in unfinished_ids if i <= after_trial_id})
    where = _trials_where(trials_t, study_id, wanted, after_trial_id)
    selected = sqlalchemy.select(trials_t.c.trial_id).where(where).scalar_subquery()

    def children(model: Any, *columns: str) -> Any:
        table = model.__table__
        return (sqlalchemy.select(table.c.trial_id, *(table.c[c] for c in columns))
                .where(table.c.trial_id.in_(selected)).order_by(*table.primary_key.columns))

    with engine.connect() as conn:
        rows = _fetch(conn, sqlalchemy.select(trials_t.c.trial_id, trials_t.c.number, trials_t.c.state,
                                              trials_t.c.datetime_start, trials_t.c.datetime_complete)
                      .where(where).order_by(trials_t.c.trial_id))
        if len(wanted) > _MAX_ID_LIST:
            keep = set(wanted)
            rows = [r for r in rows if r[0] > after_trial_id or r[0] in keep]
        if not rows:
            return []
        fetched = [_fetch(conn, children(models.TrialParamModel, "param_name", "param_value", "distribution_json")),
                   _fetch(conn, children(models.TrialValueModel, "objective", "value", "value_type")),
                   _fetch(conn, children(models.TrialUserAttributeModel, "key", "value_json")),
                   _fetch(conn, children(models.TrialSystemAttributeModel, "key", "value_json")),
                   _fetch(conn, children(models.TrialIntermediateValueModel, "step", "intermediate_value",
                                         "intermediate_value_type"))]
    parts = _decode_parts(models, rows, *fetched)
    return [_frozen(row, parts[row[0]]) for row in rows]


def _trials_where(trials_t: Any, study_id: int, wanted: list[int], after_trial_id: int) -> Any:
    """The study's trials past ``after_trial_id``, and the unfinished ones before it (``wanted``)."""
    where = trials_t.c.study_id == study_id
    if after_trial_id >= 0:
        if len(wanted) > _MAX_ID_LIST:
            where &= trials_t.c.trial_id >= wanted[0]
        elif wanted:
            where &= sqlalchemy.or_(trials_t.c.trial_id > after_trial_id, trials_t.c.trial_id.in_(wanted))
        else:
            where &= trials_t.c.trial_id > after_trial_id
    return where


def _decode_parts(models: Any, rows: list, params: list, values: list, user: list, system: list,
                  steps: list) -> dict[int, tuple]:
    """Per trial id: (params, distributions, values, user attrs, system attrs, intermediate values), decoded."""
    parts = {row[0]: ({}, {}, [], {}, {}, {}) for row in rows}
    distributions: dict[str, Any] = {}  # JSON -> distribution: a study has only a few distinct ones
    for trial_id, name, value, dist_json in params:
        part = parts.get(trial_id)
        if part is not None:
            dist = distributions.get(dist_json)
            if dist is None:
                dist = distributions[dist_json] = optuna.distributions.json_to_distribution(dist_json)
            part[0][name] = dist.to_external_repr(value)
            part[1][name] = dist
    decode_value = models.TrialValueModel.stored_repr_to_value
    for trial_id, objective, value, value_type in values:
        if trial_id in parts:
            parts[trial_id][2].append((objective, decode_value(value, value_type)))
    for index, attrs in ((3, user), (4, system)):
        decoded = json.loads("[" + ",".join(a[2] for a in attrs) + "]")  # one parse: a third faster than many
        for (trial_id, key, _), value in zip(attrs, decoded):
            if trial_id in parts:
                parts[trial_id][index][key] = value
    decode_step = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
    for trial_id, step, value, value_type in steps:
        if trial_id in parts:
            parts[trial_id][5][step] = decode_step(value, value_type)
    return parts


def _frozen(row: tuple, part: tuple) -> FrozenTrial:
    """A trial's row and its decoded parts as Optuna's ``FrozenTrial``."""
    trial_id, number, state, start, complete = row
    params_, distributions_, stored, user_attrs, system_attrs, intermediate = part
    trial_values = None
    if stored:  # as Optuna: a list as long as the stored values, each at its objective's index
        trial_values = [0.0] * len(stored)
        for objective, value in stored:
            trial_values[objective] = value
    return FrozenTrial(
        number=number, state=state, value=None, values=trial_values, datetime_start=_utc_to_local(start),
        datetime_complete=_utc_to_local(complete), params=params_, distributions=distributions_,
        user_attrs=user_attrs, system_attrs=system_attrs, intermediate_values=intermediate, trial_id=trial_id,
    )


def _fetch(conn: Any, statement: Any) -> list[tuple]:
    """Every row of ``statement`` as the driver's tuples, each column decoded as SQLAlchemy would decode it.

    SQLAlchemy's row objects cost a few microseconds each, and a study of 10,000 trials has
    a quarter of a million rows; so the driver's tuples are taken whole and only the columns
    whose type has a result processor (datetimes on SQLite, Optuna's enums) are passed through it.
    """
    result = conn.execute(statement)
    cursor = result.cursor
    dialect = conn.dialect
    processors = []
    for i, column in enumerate(statement.selected_columns):
        process = column.type.dialect_impl(dialect).result_processor(dialect, cursor.description[i][1])
        if process is not None:
            processors.append((i, process))
    rows = cursor.fetchall()
    result.close()
    if not processors:
        return rows
    decoded = []
    for row in rows:
        row = list(row)
        for i, process in processors:
            row[i] = process(row[i])
        decoded.append(row)
    return decoded


def _utc_to_local(value: dt.datetime | None) -> dt.datetime | None:
    """A stored trial datetime (naive UTC) as Optuna's ``TrialModel`` returns it: naive local time."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc).astimezone().replace(tzinfo=None)


def heartbeats(storage: BaseStorage | None, trial_ids: list[int]) -> tuple[dict[int, dt.datetime], dt.datetime | None]:
    """The last heartbeat of each trial that has one, and the database's clock (heartbeats use it).

    Reads Optuna's ``trial_heartbeats`` table; empty for storages without one.
    """
    if not trial_ids or not isinstance(storage, RDBStorage):
        return {}, None
    try:
        table = rdb_models().TrialHeartbeatModel.__table__
        with storage.engine.connect() as conn:
            db_now = conn.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
            rows = conn.execute(sqlalchemy.select(table.c.trial_id, table.c.heartbeat)
                                .where(table.c.trial_id.in_(trial_ids))).all()
    except (ImportError, AttributeError, sqlalchemy.exc.SQLAlchemyError):
        return {}, None
    if isinstance(db_now, str):  # SQLite without type information
        db_now = dt.datetime.fromisoformat(db_now)
    strip = lambda d: d.replace(tzinfo=None) if d is not None else None  # noqa: E731 (as Optuna compares them)
    return {trial_id: strip(beat) for trial_id, beat in rows if beat is not None}, strip(db_now)
