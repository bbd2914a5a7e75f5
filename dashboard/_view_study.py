"""The Study page: one study's figures in tabs (timeline, history, curves, families, importance, Optuna's plots, Pareto front, trials)."""

from __future__ import annotations

from typing import Callable

import streamlit as st

from digitune.dashboard._data import StudyData, family_of
from digitune.dashboard._reader import Reader
from digitune.dashboard._records import learning_curves, running_trials, study_summary
from digitune.dashboard._details import table_csv, trials_table
from digitune.dashboard._figures import (curves_figure, families_figure, history_figure, params_figure, pareto_figure,
                                         timeline_figure)
from digitune.dashboard._optuna_plots import family_importances, importances_figure, optuna_figure

from digitune.dashboard._views import PARALLEL_TRIALS, chart, chart_or_message, choose_study, fmt, running_table


# --------------------------------------------------------------------------- Study


def study_page(reader: Reader) -> None:
    data = choose_study(reader)
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
        st.dataframe(running_table(running), hide_index=True)

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
    chart_or_message(fig, message, key="importance_all")
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
    chart_or_message(fig, message)
    if fig is not None and complete is not None and complete > PARALLEL_TRIALS:
        st.caption(f"Drawn from {PARALLEL_TRIALS:,} of the {complete:,} complete trials, evenly spaced by trial "
                   "number: Optuna's plot of every one would take seconds to draw on each refresh.")


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
