"""digitune's dashboard, a thin Streamlit page over ``dashboard._data`` and ``dashboard._figures``.

Run: ``digitune dashboard [--storage URL]``, or ``streamlit run dashboard/app.py -- --storage URL``.
The storage is read; only submit, stop and resume (Launch and Queue pages) write. Pages: Studies,
Study, Trial, Compare, Queue, Launch (sidebar, or
``?page=Study&study=NAME&trial=3`` in the URL). With auto-refresh on, the data-dependent
part of each page reruns every few seconds on its own (``st.fragment``), reading only the
trials that changed. With ``$DIGITUNE_DASHBOARD_TOKEN`` set, the page asks for that token before it
shows anything.
"""

from __future__ import annotations

import os

# Before anything imports TensorFlow (the Trial page builds a model to list its layers).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hmac  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable  # noqa: E402

import streamlit as st  # noqa: E402

import tomllib  # noqa: E402

from digitune.search import PRUNERS, SAMPLERS, SAVED_ATTR, SpecError, StorageError, list_agents, open_storage, queue_entries, resume, spec_from_dict, stop  # noqa: E402,E501

from digitune.dashboard._data import (  # noqa: E402
    Reader,
    StudyData,
    compare_rows,
    family_of,
    learning_curves,
    model_layers,
    running_trials,
    storage_url,
    study_summary,
)
from digitune.dashboard._launch import DATASETS, LocalAgent, launch_folder_problem, live_agents, start_agent, study_from_fields, submit_definition  # noqa: E402,E501
from digitune.dashboard._queue import agent_rows, queue_figure, queue_rows  # noqa: E402
from digitune.search._cli_dashboard import TOKEN_ENV  # noqa: E402
from digitune.dashboard._model import (  # noqa: E402
    MAX_UPLOAD_BYTES,
    SavedModel,
    UploadError,
    load_saved_model,
    misclassified,
    predict_upload,
    submission_csv,
)
from digitune.dashboard import (  # noqa: E402
    compare_figure,
    confusion_figure,
    curves_figure,
    families_figure,
    family_importances,
    history_figure,
    importances_figure,
    optuna_figure,
    params_figure,
    pareto_figure,
    per_class_figure,
    table_csv,
    timeline_figure,
    trial_curves_figure,
    trials_table,
)

PAGES = ("Studies", "Study", "Trial", "Compare", "Queue", "Launch")
REFRESH_CHOICES = (2, 5, 10, 30)
PARALLEL_TRIALS = 2000  # the parallel-coordinate plot draws at most this many complete trials
PLOTLY_CONFIG = {"displaylogo": False}
MAX_STUDY_FILE_BYTES = 256 * 1024  # an uploaded study file (TOML) is a few hundred bytes


@st.cache_resource(show_spinner=False)
def get_reader(url: str) -> Reader:
    """One reader (and trial cache) per storage, shared by every browser session."""
    return Reader.open(url)


def chart(fig, key: str | None = None) -> None:
    st.plotly_chart(fig, config=PLOTLY_CONFIG, key=key)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# --------------------------------------------------------------------------- Studies


def studies_page(reader: Reader) -> None:
    st.title("Studies")
    st.caption(f"Storage: `{reader.display_url}`")
    rows = reader.studies()
    if not rows:
        st.info("No studies yet in this storage. Start one with `digitune run studies/quickstart.toml` "
                "(or pass `--storage` to open another database).")
        return
    running = [dict(study=row["name"], **r) for row in rows for r in row["running"]]
    cols = st.columns(4)
    cols[0].metric("studies", len(rows))
    cols[1].metric("trials", sum(r["n_trials"] for r in rows))
    cols[2].metric("running trials", len(running))
    cols[3].metric("studies with workers now", sum(r["running_now"] for r in rows))
    table = [{
        "study": r["name"],
        "workers": "running now" if r["running_now"] else "idle",
        "objectives": ", ".join(r["objectives"]),
        "dataset": r["dataset"],
        "complete": r["trials"]["complete"],
        "pruned": r["trials"]["pruned"],
        "failed": r["trials"]["fail"],
        "running": r["trials"]["running"],
        "waiting": r["trials"]["waiting"],
        "best value": r["best_value"],
        "best trial": r["best_trial"],
        "Pareto front": r["pareto_size"],
        "last activity": r["last_activity"],
    } for r in rows]
    st.dataframe(table, hide_index=True, column_config={
        "best value": st.column_config.NumberColumn(format="%.4f"),
    })
    if running:
        st.subheader("Running now")
        st.dataframe(_running_table(running), hide_index=True)


def _running_table(running: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{
        **({"study": r["study"]} if "study" in r else {}),
        "trial": r["number"], "family": r["family"], "epoch": r["epoch"], "last value": r["last_value"],
        "started": r["started"].isoformat(timespec="seconds") if r["started"] else None,
        "worker": "alive" if r["alive"] else "no recent heartbeat",
    } for r in running]


# --------------------------------------------------------------------------- Study


def _choose_study(reader: Reader, label: str = "Study") -> StudyData | None:
    names = reader.study_names()
    if not names:
        st.info("No studies yet in this storage. Start one with `digitune run studies/quickstart.toml`.")
        return None
    name = st.selectbox(label, names, key="study", bind="query-params")
    try:
        return reader.study(name)
    except KeyError:
        st.warning(f"Study {name!r} is gone (deleted meanwhile?).")
        return None


def study_page(reader: Reader) -> None:
    data = _choose_study(reader)
    if data is None:
        return
    summary = study_summary(data)
    st.title(f"Study {data.name}")
    spec_bits = [f"objectives: {', '.join(data.objectives)}", f"dataset: {summary['dataset'] or '?'}"]
    shown = ("sampler", "max_params") if data.is_multi_objective else ("sampler", "pruner", "max_params")
    spec_bits += [f"{k}: {summary[k]}" for k in shown if summary[k]]  # multi-objective studies never prune
    st.caption(" · ".join(spec_bits))
    counts = summary["trials"]
    cols = st.columns(6)
    target = f" / {summary['target_trials']}" if summary["target_trials"] else ""
    cols[0].metric("finished", f"{counts['complete'] + counts['pruned']}{target}",
                   help=f"complete and pruned trials (of {summary['n_trials']} in all), against the study's target")
    cols[1].metric("complete", counts["complete"])
    cols[2].metric("pruned", counts["pruned"])
    cols[3].metric("failed", counts["fail"])
    alive = sum(r["alive"] for r in summary["running"])
    cols[4].metric("running", counts["running"], help=f"{alive} with a worker alive now (a recent heartbeat or start)")
    if data.is_multi_objective:
        cols[5].metric("Pareto front", f"{len(summary['pareto_front'])} trials")
    else:
        best = summary["best"]
        cols[5].metric("best value", fmt(best["value"]) if best else "–",
                       help=f"trial {best['number']} ({best['family']})" if best else None)
    running = running_trials(data)
    if running:
        st.caption("Running now")
        st.dataframe(_running_table(running), hide_index=True)

    objective = 0
    if data.is_multi_objective:
        objective = st.columns(3)[0].selectbox("Objective", range(len(data.objectives)),
                                               format_func=lambda i: data.objectives[i], key="objective")
    labels = ["History", "Curves", "MLP vs CNN", "Importance", "Parallel", "Slice", "Contour", "EDF"]
    labels += ["Pareto"] if data.is_multi_objective else []
    labels += ["Timeline", "Trials"]
    tabs = dict(zip(labels, st.tabs(labels, key="tab", bind="query-params")))
    renderers: dict[str, Callable[[], None]] = {
        "History": lambda: _history_tab(data, objective),
        "Curves": lambda: _curves_tab(data),
        "MLP vs CNN": lambda: _families_tab(data),
        "Importance": lambda: _importance_tab(data, objective),
        "Parallel": lambda: _optuna_tab(data, "parallel", objective),
        "Slice": lambda: _optuna_tab(data, "slice", objective),
        "Contour": lambda: _optuna_tab(data, "contour", objective),
        "EDF": lambda: _optuna_tab(data, "edf", objective),
        "Pareto": lambda: _pareto_tab(data),
        "Timeline": lambda: _timeline_tab(data),
        "Trials": lambda: _trials_tab(data),
    }
    for label, tab in tabs.items():
        if tab.open is not False:  # only the open tab runs (None: state not tracked, run all)
            with tab:
                renderers[label]()


def _timeline_tab(data: StudyData) -> None:
    if any(r["state"] == "running" for r in data.records):  # their bars grow until now: draw afresh
        chart(timeline_figure(data), key="timeline")
    else:
        chart(data.memoized("timeline", lambda: timeline_figure(data)), key="timeline")


def _history_tab(data: StudyData, objective: int) -> None:
    log_y = st.toggle("log scale", key="history_log")
    chart(data.memoized(("history", objective, log_y), lambda: history_figure(data, objective=objective,
                                                                                log_y=log_y)))


def _curves_tab(data: StudyData) -> None:
    cols = st.columns(3)
    metric = cols[0].selectbox("metric", ["val_accuracy", "accuracy", "val_loss", "loss"], key="curves_metric")
    curves = data.memoized(("curves", metric), lambda: learning_curves(data, metric))
    default = 0 if len(curves) <= 50 else 20
    top_k = cols[1].number_input("top K trials (0: all)", min_value=0, max_value=max(len(curves), 1),
                                 value=min(default, len(curves)), step=1, key="curves_top")
    show_pruned = cols[2].toggle("show pruned trials", value=True, key="curves_pruned")
    key = ("curves_fig", metric, int(top_k), show_pruned)
    chart(data.memoized(key, lambda: curves_figure(curves, metric=metric, top_k=int(top_k) or None,
                                                   show_pruned=show_pruned)))
    st.caption("Solid: complete (coloured by family, thick: tutorial baseline). Dashed grey: pruned. "
               "Dotted: running.")


def _families_tab(data: StudyData) -> None:
    left, right = st.columns(2)
    with left:
        chart(data.memoized("families", lambda: families_figure(data)), key="families")
    with right:
        chart(data.memoized("params", lambda: params_figure(data)), key="params")
    rows = []
    for family in sorted({family_of(r) for r in data.records if r["state"] == "complete"}):
        done = [r for r in data.records if r["state"] == "complete" and family_of(r) == family]
        acc = sorted(r["accuracy"] for r in done if r["accuracy"] is not None)
        params = sorted(r["params_count"] for r in done if r["params_count"])
        rows.append({"family": family, "complete": len(done), "best accuracy": acc[-1] if acc else None,
                     "median accuracy": acc[len(acc) // 2] if acc else None,
                     "median params": params[len(params) // 2] if params else None,
                     "baselines": sum(1 for r in done if r["baseline"])})
    if rows:
        st.dataframe(rows, hide_index=True)


def _importance_tab(data: StudyData, objective: int) -> None:
    fig, message = data.memoized(("optuna", "importance", objective), lambda: optuna_figure(
        "importance", data.optuna_study, objective=objective, objective_name=data.objectives[objective]))
    st.subheader("All trials")
    _chart_or_message(fig, message, key="importance_all")
    families = sorted({family_of(r) for r in data.records if r["state"] == "complete"})
    if not families:
        return
    st.subheader("Within each family")
    cols = st.columns(len(families))
    for col, family in zip(cols, families):
        with col:
            try:
                importances = data.memoized(("family_importance", family, objective),
                                            lambda f=family: family_importances(data, f, objective=objective))
            except ValueError as exc:
                st.info(f"Importance within {family.upper()} trials: {exc}")
                continue
            chart(importances_figure(importances, f"{family.upper()} trials only"), key=f"importance_{family}")


def _optuna_tab(data: StudyData, kind: str, objective: int) -> None:
    params = None
    if kind == "contour":
        names = sorted({p for t in data.trials for p in t.params})
        if len(names) < 2:
            st.info("The contour plot needs at least two searched parameters.")
            return
        default = [p for p in ("learning_rate", "epochs", "batch_size") if p in names] or names[:2]
        params = st.multiselect("parameters", names, default=default, key="contour_params")
        if len(params) < 2:
            st.info("Choose two or more parameters.")
            return
    study, complete = data.optuna_study, None
    if kind == "parallel":  # one line per trial, drawn by Optuna as thousands of traces: a sample of big studies
        study, complete = data.optuna_sample(PARALLEL_TRIALS)
    fig, message = data.memoized(("optuna", kind, objective, tuple(params or ())), lambda: optuna_figure(
        kind, study, objective=objective, objective_name=data.objectives[objective], params=params))
    _chart_or_message(fig, message)
    if fig is not None and complete is not None and complete > PARALLEL_TRIALS:
        st.caption(f"Drawn from {PARALLEL_TRIALS:,} of the {complete:,} complete trials, evenly spaced by trial "
                   "number: Optuna's plot of every one would take seconds to draw on each refresh.")


def _chart_or_message(fig, message: str | None, key: str | None = None) -> None:
    if fig is not None:
        chart(fig, key=key)
    else:
        st.info(message)


def _pareto_tab(data: StudyData) -> None:
    n = len(data.objectives)
    x, y = 1, 0
    if n > 2:
        cols = st.columns(2)
        x = cols[0].selectbox("x", range(n), index=1, format_func=lambda i: data.objectives[i], key="pareto_x")
        y = cols[1].selectbox("y", range(n), index=0, format_func=lambda i: data.objectives[i], key="pareto_y")
    chart(data.memoized(("pareto", x, y), lambda: pareto_figure(data, x=x, y=y)))
    front = [data.record(num) for num in data.pareto_numbers]
    st.caption(f"Pareto front: {len(front)} trials (infeasible trials, over a constraint, are grey crosses)")
    on_front = set(data.pareto_numbers)
    st.dataframe([r for r in trials_table(data, states=["complete"]) if r["number"] in on_front], hide_index=True)


def _trials_tab(data: StudyData) -> None:
    states = sorted({r["state"] for r in data.records})
    families = sorted({family_of(r) for r in data.records})
    cols = st.columns(3)
    chosen_states = cols[0].multiselect("state", states, default=states, key="filter_states")
    chosen_families = cols[1].multiselect("family", families, default=families, key="filter_families")
    values = [r["values"][0] for r in data.records if r["state"] in ("complete", "pruned") and r["values"]]
    value_range = None
    if len(values) >= 2 and min(values) < max(values):
        low, high = float(min(values)), float(max(values))
        # Keyed on its bounds: when a new trial widens them the slider starts over at the full range
        # instead of silently hiding the newcomer.
        chosen = cols[2].slider(f"{data.objectives[0]} range", low, high, (low, high),
                                key=f"filter_values:{low}:{high}")
        if chosen != (low, high):
            value_range = chosen
    rows = trials_table(data, states=chosen_states, families=chosen_families, value_range=value_range)
    st.caption(f"{len(rows)} of {len(data.records)} trials")
    st.dataframe(rows, hide_index=True)
    st.download_button("Download CSV", table_csv(rows), file_name=f"{data.name}-trials.csv", mime="text/csv",
                       key="download_csv")


# --------------------------------------------------------------------------- Trial


def trial_page(reader: Reader) -> None:
    data = _choose_study(reader)
    if data is None:
        return
    if not data.records:
        st.title("Trial")
        st.info(f"Study {data.name} has no trials yet.")
        return
    numbers = [r["number"] for r in data.records]
    wanted = st.query_params.get("trial", "")
    if wanted.isdigit() and int(wanted) in numbers:
        default = int(wanted)
    else:
        default = data.best["number"] if data.best else (data.pareto_numbers or numbers)[-1]
    # Bound to ?trial=N by hand: a bound selectbox would put the whole label in the URL.
    number = st.selectbox("Trial", numbers, index=numbers.index(default), key=f"trial:{data.name}",
                          format_func=lambda n: _trial_label(data.record(n)))
    st.query_params["trial"] = str(number)
    record = data.record(number)
    st.title(f"Trial {number} of {data.name}")
    if record["baseline"]:
        st.caption(f"Tutorial baseline: {record['baseline']}")
    cols = st.columns(6)
    cols[0].metric("state", record["state"])
    values = record["values"] or []
    for i, metric in enumerate(data.metrics[:2]):
        cols[1 + i].metric(metric, fmt(values[i]) if i < len(values) else "–")
    cols[3].metric("family", family_of(record), help=f"tutorial baseline {record['baseline']}"
                   if record["baseline"] else None)
    cols[4].metric("parameters", fmt(record["params_count"]))
    cols[5].metric("epochs", record["epoch"])
    if record["fail_reason"]:
        st.error(f"Failed: {record['fail_reason']}")
    if not record["feasible"]:
        st.warning(f"Infeasible: constraints {record['constraints']} (a positive value is over the limit)")

    left, right = st.columns(2)
    with left:
        st.subheader("Parameters")
        params = [{"parameter": k, "value": _text(v)} for k, v in record["params"].items()]
        if record["train_config"]:
            params += [{"parameter": f"train.{k}", "value": _text(v)} for k, v in record["train_config"].items()]
        if params:
            st.dataframe(params, hide_index=True)
        else:
            st.info("No parameters recorded.")
        st.subheader("Run")
        details = {"started": record["datetime_start"], "completed": record["datetime_complete"],
                   "duration (s)": record["duration_s"], "train seconds": record["train_seconds"],
                   "Keras backend": record["keras_backend"], "device": record["device"],
                   "latency (ms/image)": record["latency_ms"], "constraints": record["constraints"]}
        st.dataframe([{"field": k, "value": _text(v)} for k, v in details.items() if v is not None], hide_index=True)
    with right:
        st.subheader("Model")
        _model_summary(record, data)
    chart(trial_curves_figure(record), key="trial_curves")
    st.subheader("Classes")
    if record["confusion_matrix"] and record["per_class_accuracy"]:
        left, right = st.columns(2)
        with left:
            chart(confusion_figure(record["confusion_matrix"]), key="confusion")
        with right:
            chart(per_class_figure(record["per_class_accuracy"]), key="per_class")
    else:
        st.info("Confusion matrix and per-class accuracy: not recorded for this trial "
                "(only complete trials of newer digitune versions have them).")
    _saved_model_section(reader, data, record)


@st.cache_resource(show_spinner="Loading the saved model…", max_entries=8)
def _saved_model(url: str, _storage: Any, study_name: str, number: int, artifact: str) -> SavedModel | None:
    return load_saved_model(url, _storage, study_name, number)


# Keyed by the artifact id; the leading underscore keeps Streamlit from hashing the model.
@st.cache_data(show_spinner=False, max_entries=32)
def _mistakes(artifact: str, _saved: SavedModel) -> list[dict[str, Any]]:
    return misclassified(_saved)


@st.cache_data(show_spinner=False, max_entries=32)
def _submission(artifact: str, _saved: SavedModel) -> str:
    return submission_csv(_saved)


def _saved_model_section(reader: Reader, data: StudyData, record: dict[str, Any]) -> None:
    st.subheader("Saved model")
    number = record["number"]
    artifact = (data.user_attrs.get(SAVED_ATTR) or {}).get(str(number))
    if artifact is None:
        st.info("No saved model for this trial: digitune keeps the models of a study's best `save_models` "
                "trials (export any trial's config with `digitune export-model`).")
        return
    saved = _saved_model(reader.url or "", reader.storage, data.name, number, artifact)
    if saved is None:
        st.info("This trial's model was saved, but its file is not in the artifact folder here.")
        return
    left, right = st.columns(2)
    left.download_button("Download the model (.keras)", saved.keras_bytes,
                         file_name=f"{data.name}-trial-{number}.keras", mime="application/octet-stream",
                         key="download_model")
    right.download_button("Download a submission CSV (held-out test images)",
                          _submission(artifact, saved),
                          file_name=f"{data.name}-trial-{number}-submission.csv", mime="text/csv",
                          key="download_submission")
    mistakes = _mistakes(artifact, saved)
    st.markdown(f"**Misclassified validation images** ({len(mistakes)} shown, most confident first)")
    if mistakes:
        columns = st.columns(8)
        for i, item in enumerate(mistakes):
            columns[i % 8].image(item["image"], caption=f"true {item['true']} → {item['predicted']} "
                                                        f"({item['probability']:.0%})")
    upload = st.file_uploader(f"Upload a digit (PNG, at most {MAX_UPLOAD_BYTES // 1024} KiB)", type=["png"],
                              key=f"upload:{data.name}:{number}")
    if upload is not None:
        try:
            probabilities = predict_upload(saved, upload.getvalue())
        except UploadError as exc:
            st.error(f"Cannot read that image: {exc}")
        else:
            label = int(probabilities.argmax())
            st.metric("prediction", label, help=f"probability {probabilities[label]:.1%}")
            st.bar_chart({"probability": [float(p) for p in probabilities]})


def _trial_label(record: dict[str, Any]) -> str:
    value = record["values"][0] if record["values"] else None
    tag = f" {record['baseline']}" if record["baseline"] else ""
    return f"#{record['number']} {record['state']} {fmt(value)} {family_of(record)}{tag}"


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else fmt(value, 6)


@st.cache_data(show_spinner="Building the model to list its layers…", max_entries=256)
def _layers(config_json: str, image_shape: tuple[int, ...]) -> dict[str, Any]:
    return model_layers(json.loads(config_json), image_shape)


def _model_summary(record: dict[str, Any], data: StudyData) -> None:
    if not record["model_config"]:
        st.info("No model config recorded for this trial.")
        return
    if not data.image_shape:
        st.info("The study does not record its image shape; cannot rebuild the model.")
        st.json(record["model_config"], expanded=False)
        return
    try:
        summary = _layers(json.dumps(record["model_config"], sort_keys=True), data.image_shape)
    except Exception as exc:  # noqa: BLE001 (a config this digitune cannot build: show it, not a traceback)
        st.warning(f"Cannot rebuild this model: {exc}")
        st.json(record["model_config"], expanded=False)
        return
    shape = "×".join(str(d) for d in summary["input_shape"])
    st.caption(f"{record['model_config'].get('family', '?').upper()} on {shape} images: "
               f"{summary['total_params']:,} parameters")
    st.dataframe(summary["layers"], hide_index=True)


# --------------------------------------------------------------------------- Compare


def compare_page(reader: Reader) -> None:
    st.title("Compare studies")
    names = reader.study_names()
    if len(names) < 2:
        st.info("Comparing needs two or more studies; this storage has "
                f"{len(names) if names else 'none yet'}.")
        return
    chosen = st.multiselect("Studies", names, default=names[:min(3, len(names))], key="compare")
    if len(chosen) < 2:
        st.info("Select two or more studies.")
        return
    studies = [reader.study(name) for name in chosen]
    chart(compare_figure(studies), key="compare_history")
    st.dataframe(compare_rows(studies), hide_index=True, column_config={
        "best value": st.column_config.NumberColumn(format="%.4f"),
        "best accuracy": st.column_config.NumberColumn(format="%.4f"),
    })


# --------------------------------------------------------------------------- the app


# --------------------------------------------------------------------------- Queue and Launch


@st.cache_resource(show_spinner=False)
def _writer(url: str):
    """A storage for the few writes the dashboard makes (submit, stop, resume), separate from the reader's."""
    return open_storage(url, heartbeat=False)


@st.cache_resource
def _local_agents() -> list[LocalAgent]:
    """Agents this dashboard process started (shared by every browser session)."""
    return []


def queue_page(reader: Reader) -> None:
    st.title("Queue")
    st.caption("Studies submitted with `digitune submit` or the Launch page, and the agents (`digitune agent`) "
               "working through them, most urgent first.")
    storage = reader.opened()  # None while a SQLite file does not exist yet: nothing submitted
    entries, agents = (queue_entries(storage), list_agents(storage)) if storage is not None else ([], [])
    if not entries:
        st.info("Nothing submitted yet: `digitune submit STUDY.toml`, or the Launch page.")
    else:
        cols = st.columns(4)
        cols[0].metric("queued", sum(e.state == "queued" for e in entries))
        cols[1].metric("running", sum(e.state == "running" for e in entries))
        cols[2].metric("done", sum(e.state == "done" for e in entries))
        cols[3].metric("live agents", sum(a["status"] in ("working", "idle") for a in agents))
        chart(queue_figure(entries), key="queue_figure")
        st.dataframe(queue_rows(entries, agents), hide_index=True, key="queue_table",
                     column_config={"best value": st.column_config.NumberColumn(format="%.4f")})
        _queue_controls(_writer(reader.url or ""), entries)
    st.subheader("Agents")
    if agents:
        st.dataframe(agent_rows(agents), hide_index=True, key="agents_table")
    else:
        st.info("No agent has registered on this storage. Start one with `digitune agent`, or submit from the "
                "Launch page, which starts one here when none is running.")


def _queue_controls(storage, entries) -> None:
    """Stop or resume one submitted study: agents honour it at their next trial boundary."""
    left, right = st.columns([3, 1])
    name = left.selectbox("Study", [e.name for e in entries], key="queue_study")
    entry = next(e for e in entries if e.name == name)
    if entry.state in ("queued", "running"):
        if right.button("Stop", key="queue_stop"):
            stop(storage, name)
            st.info(f"Stopped {name!r}: agents leave it after their running trial.")
    elif right.button("Resume", key="queue_resume", disabled=entry.finished >= entry.trials):
        try:
            resume(storage, name)
        except SpecError as exc:
            st.error(str(exc))
        else:
            st.info(f"Queued {name!r} again.")


def launch_page(reader: Reader) -> None:
    st.title("Launch a study")
    st.caption("Submits the study to the queue on this storage; agents run it. When no agent is running, one is "
               "started here. Submitting, stopping and resuming are the only things the dashboard writes.")
    local = _local_agents()
    with st.container(border=True):
        name = st.text_input("Study name", value="dashboard-study", key="launch_name")
        left, right = st.columns(2)
        dataset = left.selectbox("Dataset", DATASETS, key="launch_dataset")
        trials = right.number_input("Trials", min_value=1, max_value=10_000, value=12, key="launch_trials")
        sampler = left.selectbox("Sampler", SAMPLERS, key="launch_sampler")
        pruner = right.selectbox("Pruner", PRUNERS, key="launch_pruner")
        families = left.multiselect("Families", ["mlp", "cnn"], default=["mlp", "cnn"], key="launch_families")
        priority = right.number_input("Priority (higher runs first)", value=0, step=1, key="launch_priority")
        workers = left.number_input("Agent processes, if one is started here", min_value=1, max_value=64, value=1,
                                    key="launch_workers")
        uploaded = st.file_uploader("…or a study file (TOML) instead of these fields", type=["toml"],
                                    key="launch_file")
        problem = launch_folder_problem()  # a folder others can write to: say so before anything is typed in
        if problem:
            st.error(f"Cannot launch: {problem}")
        if st.button("Launch", type="primary", key="launch_button", disabled=bool(problem)):
            try:
                if uploaded is not None:
                    definition = _uploaded_definition(uploaded)
                else:
                    definition = study_from_fields(name=name, dataset=dataset, trials=int(trials), sampler=sampler,
                                                   pruner=pruner, families=families or ["mlp"])
                entry = submit_definition(definition, reader.url or "", priority=int(priority))
                _launched(reader, entry, local, int(workers))
            except (SpecError, StorageError, tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
                st.error(f"Cannot launch: {exc}")
    _launched_progress(reader, local)


def _launched(reader: Reader, entry, local: list[LocalAgent], workers: int) -> None:
    """Say what became of a submitted study: running agents will take it, or one is started here for it."""
    message = f"Launched study {entry.name!r} ({entry.trials} trials): submitted to the queue"
    running = live_agents(reader.opened()) or [a for a in local if a.running]
    if running:
        st.success(message + f"; {len(running)} running agent(s) will pick it up.")
        return
    try:
        local.append(start_agent(reader.url or "", workers=workers))
    except OSError as exc:  # e.g. the launch folder went bad after the study file was written
        st.warning(f"{message}, but no agent could be started here: {exc}")
        return
    st.success(message + f"; no agent was running, so one was started here ({workers} process"
               f"{'es' if workers > 1 else ''}).")


def _uploaded_definition(uploaded) -> dict[str, Any]:
    """The study definition in an uploaded TOML file (``SpecError`` if it is too big or not a study)."""
    if uploaded.size > MAX_STUDY_FILE_BYTES:
        raise SpecError(f"{uploaded.name}: the study file is {uploaded.size:,} bytes; "
                        f"upload at most {MAX_STUDY_FILE_BYTES:,} bytes")
    return spec_from_dict(tomllib.loads(uploaded.getvalue().decode()), source=uploaded.name).to_dict()


def _launched_progress(reader: Reader, local: list[LocalAgent]) -> None:
    """The queue's studies with their progress, and the agents this dashboard started, with a stop button."""
    storage = reader.opened()
    entries = queue_entries(storage) if storage is not None else []
    if entries:
        st.subheader("Queue")
        for e in entries:
            st.markdown(f"**{e.name}**: {e.state}, {e.finished} of {e.trials} trials finished"
                        + (f", {e.running} running" if e.running else ""))
            st.progress(min(e.finished / e.trials, 1.0))
    for i, agent in enumerate(local):
        with st.container(border=True):
            state = "running" if agent.running else f"ended (exit code {agent.returncode})"
            st.markdown(f"**agent started here** (pid {agent.process.pid}, {agent.workers} process"
                        f"{'es' if agent.workers > 1 else ''}): {state}")
            st.code(agent.log_tail() or "(no output yet)", language=None)
            if agent.running and st.button("Stop this agent", key=f"stop_agent:{i}"):
                code = agent.stop()
                st.info(f"Stopped the agent (exit code {code}); its finished trials stay in their studies.")


RENDER = {"Studies": studies_page, "Study": study_page, "Trial": trial_page, "Compare": compare_page,
          "Queue": queue_page, "Launch": launch_page}


def signed_in() -> bool:
    """True when no token is set (``$DIGITUNE_DASHBOARD_TOKEN``) or this session gave it; else asks for it.

    Nothing else of the page, the storage's name included, is shown before the token is given.
    """
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token or st.session_state.get("signed_in"):
        return True
    st.title("digitune")
    given = st.text_input("Token", type="password", key="sign_in_token",
                          help=f"The dashboard's token, as its server has it in ${TOKEN_ENV}.")
    if given:
        if hmac.compare_digest(given.strip().encode(), token.encode()):
            st.session_state["signed_in"] = True
            st.rerun()
        time.sleep(1)  # a guess a second per session
        st.error("That is not the dashboard's token.")
    else:
        st.info("This dashboard asks for a token: enter the one its server was started with.")
    return False


def main() -> None:
    st.set_page_config(page_title="digitune", layout="wide")
    if not signed_in():
        return
    try:
        reader = get_reader(storage_url(sys.argv[1:]))
    except StorageError as exc:
        st.error(f"Cannot open the study storage: {exc}")
        return
    with st.sidebar:
        st.header("digitune")
        page = st.radio("Page", PAGES, key="page", bind="query-params")
        auto = st.toggle("auto-refresh", value=True, key="auto_refresh")
        every = st.select_slider("every (seconds)", REFRESH_CHOICES, value=5, key="refresh_every",
                                 disabled=not auto)
        st.caption(f"Storage: `{reader.display_url}`")
        st.caption("Read-only, except the Launch and Queue pages' buttons (submit, stop, resume).")
    body = st.fragment(run_every=every if auto else None)(RENDER[page])
    body(reader)


main()
