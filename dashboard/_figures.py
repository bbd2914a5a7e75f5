"""Plotly figures (and table rows) from the dashboard's records: pure functions, no Streamlit, no storage.

Every figure keeps the user's zoom across live refreshes (``uirevision``). Optuna's own
plots (importances, parallel coordinates, slice, contour, EDF) are wrapped so that a study
with too few trials gives a message instead of an exception.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import warnings
from typing import Any, Callable, Iterable

import optuna
import plotly.graph_objects as go

from ._data import StudyData, family_of, in_memory_study, quiet_optuna

FAMILY_COLORS = {"mlp": "#1f77b4", "cnn": "#ff7f0e", "?": "#7f7f7f"}
STATE_COLORS = {"complete": "#2ca02c", "pruned": "#ff9f1c", "fail": "#d62728", "running": "#1f77b4",
                "waiting": "#9467bd"}
GREY = "#b0b0b0"
BASELINE_MARKER = dict(symbol="star", size=15, color="#e6b800", line=dict(width=1, color="#5a4500"))
MANY_CURVES = 150  # beyond this many, curves are drawn as one trace per style rather than one per trial
MANY_POINTS = 3000
OPTUNA_PLOTS = ("importance", "parallel", "slice", "contour", "edf")


def _layout(fig: go.Figure, title: str, *, x: str | None = None, y: str | None = None, height: int = 450,
            legend: bool = True) -> go.Figure:
    fig.update_layout(  # the legend goes under the plot, where it cannot run into the title in a narrow column
        title=dict(text=title, x=0.01), template="plotly_white", height=height, uirevision="digitune",
        margin=dict(l=60, r=20, t=50, b=40), showlegend=legend,
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
    )
    if x:
        fig.update_xaxes(title_text=x)
    if y:
        fig.update_yaxes(title_text=y)
    return fig


def message_figure(text: str) -> go.Figure:
    """An empty figure that says why there is nothing to plot."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=15))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "", height=250, legend=False)


def _objective_label(data: StudyData, index: int) -> str:
    return data.objectives[index] if index < len(data.objectives) else f"objective {index}"


def _hover(record: dict[str, Any]) -> str:
    parts = [f"trial {record['number']}", family_of(record)]
    if record["baseline"]:
        parts.append(record["baseline"])
    if record["params_count"]:
        parts.append(f"{record['params_count']:,} params")
    if record["epochs_run"]:
        parts.append(f"{record['epochs_run']} epochs")
    if not record["feasible"]:
        parts.append("infeasible")
    return "<br>".join(parts)


# --------------------------------------------------------------------------- history


def history_figure(data: StudyData, *, objective: int = 0, log_y: bool = False) -> go.Figure:
    """Every complete trial's value by trial number, the best so far as a line, tutorial baselines as stars.

    Infeasible trials (over a constraint) are greyed and never count as best.
    """
    direction = data.directions[objective]
    done = [r for r in data.records if r["state"] == "complete" and r["values"] is not None]
    label = _objective_label(data, objective)
    if not done:
        return message_figure("no complete trial yet")
    fig = go.Figure()
    searched = [r for r in done if not r["baseline"]]
    for family in sorted({family_of(r) for r in searched if r["feasible"]}):
        rows = [r for r in searched if r["feasible"] and family_of(r) == family]
        fig.add_trace(_points(rows, objective, family, dict(color=FAMILY_COLORS.get(family, GREY), size=8)))
    infeasible = [r for r in searched if not r["feasible"]]
    if infeasible:
        fig.add_trace(_points(infeasible, objective, "infeasible", dict(color=GREY, size=8, symbol="x")))
    baselines = [r for r in done if r["baseline"]]
    if baselines:
        fig.add_trace(_baseline_trace([r["number"] for r in baselines],
                                      [r["values"][objective] for r in baselines], baselines))
    best_x, best_y, best = [], [], None
    better = (lambda a, b: a > b) if direction == "maximize" else (lambda a, b: a < b)
    for record in done:
        if not record["feasible"]:
            continue
        value = record["values"][objective]
        if best is None or better(value, best):
            best = value
        best_x.append(record["number"])
        best_y.append(best)
    if best_x:
        fig.add_trace(go.Scatter(x=best_x, y=best_y, mode="lines", name="best so far",
                                 line=dict(color="#d62728", width=2, shape="hv")))
    _layout(fig, f"Optimization history: {label}", x="trial", y=label)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _scatter(count: int) -> type:
    """WebGL scatter for big studies: SVG gets slow in the browser beyond a few thousand points."""
    return go.Scattergl if count > MANY_POINTS else go.Scatter


def _points(rows: list[dict[str, Any]], objective: int, name: str, marker: dict[str, Any]) -> go.Scatter:
    return _scatter(len(rows))(x=[r["number"] for r in rows], y=[r["values"][objective] for r in rows], mode="markers",
                      name=name, marker=dict(opacity=0.85, **marker), text=[_hover(r) for r in rows],
                      hovertemplate="%{text}<br>%{y:.4g}<extra></extra>")


def _baseline_trace(x: list[Any], y: list[Any], records: list[dict[str, Any]], *, name: str = "tutorial baselines",
                    labels: bool = True) -> go.Scatter:
    return go.Scatter(
        x=x, y=y, mode="markers+text" if labels else "markers", name=name, marker=BASELINE_MARKER, cliponaxis=False,
        text=[r["baseline"] for r in records], textposition="top center", textfont=dict(size=10),
        hovertext=[_hover(r) for r in records], hovertemplate="%{hovertext}<br>%{y:.4g}<extra></extra>",
    )


# --------------------------------------------------------------------------- learning curves


def curves_figure(curves: list[dict[str, Any]], *, metric: str = "val_accuracy", top_k: int | None = None,
                  show_pruned: bool = True) -> go.Figure:
    """``metric`` per epoch for every trial (or the ``top_k`` best by their best epoch).

    Complete trials are solid, coloured by family; pruned trials dashed and grey, labelled
    "pruned"; running trials dotted; baselines thicker and named after their preset.
    """
    maximize = "accuracy" in metric
    chosen = [c for c in curves if show_pruned or c["state"] != "pruned"]
    if top_k is not None:
        chosen = sorted(chosen, key=lambda c: c["best"], reverse=maximize)[:top_k]
    chosen.sort(key=lambda c: c["number"])
    if not chosen:
        return message_figure("no learning curves yet")
    fig = go.Figure()
    if len(chosen) > MANY_CURVES:
        _grouped_curves(fig, chosen)
    else:
        for curve in chosen:
            fig.add_trace(go.Scatter(x=list(range(1, len(curve["values"]) + 1)), y=curve["values"],
                                     mode="lines+markers" if len(curve["values"]) == 1 else "lines",
                                     name=curve_label(curve), **curve_style(curve)))
    shown = f"top {len(chosen)} of {len(curves)}" if top_k is not None else f"{len(chosen)} trials"
    _layout(fig, f"Learning curves ({shown})", x="epoch", y=metric, legend=len(fig.data) <= 40)
    fig.update_layout(legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02))
    return fig


def curve_label(curve: dict[str, Any]) -> str:
    label = f"#{curve['number']} {curve['family'] or '?'}"
    if curve["baseline"]:
        label += f" {curve['baseline']}"
    if curve["state"] != "complete":
        label += f" ({curve['state']} at epoch {len(curve['values'])})"
    return label


def curve_style(curve: dict[str, Any]) -> dict[str, Any]:
    state = curve["state"]
    if state == "pruned":
        return dict(line=dict(color=GREY, dash="dash", width=1.5), opacity=0.7)
    if state in ("running", "waiting"):
        return dict(line=dict(color=FAMILY_COLORS.get(curve["family"] or "?", GREY), dash="dot", width=2))
    if state == "fail":
        return dict(line=dict(color=STATE_COLORS["fail"], dash="dashdot", width=1.5), opacity=0.7)
    return dict(line=dict(color=FAMILY_COLORS.get(curve["family"] or "?", GREY), width=3 if curve["baseline"] else 2))


def _grouped_curves(fig: go.Figure, curves: list[dict[str, Any]]) -> None:
    """Many curves: one trace per (state, family), curves separated by gaps, so the browser stays fast."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for curve in curves:
        groups.setdefault((curve["state"], curve["family"] or "?"), []).append(curve)
    for (state, family), rows in sorted(groups.items()):
        xs: list[Any] = []
        ys: list[Any] = []
        for curve in rows:
            xs += list(range(1, len(curve["values"]) + 1)) + [None]
            ys += list(curve["values"]) + [None]
        style = curve_style({"state": state, "family": family, "baseline": None})
        fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", name=f"{family} {state} ({len(rows)})", **style))


# --------------------------------------------------------------------------- MLP vs CNN


def families_figure(data: StudyData) -> go.Figure:
    """Validation accuracy of complete trials, one box (with every point) per family; baselines as stars."""
    done = [r for r in data.records if r["state"] == "complete" and r["accuracy"] is not None]
    if not done:
        return message_figure("no complete trial yet")
    fig = go.Figure()
    for family in sorted({family_of(r) for r in done}):
        rows = [r for r in done if family_of(r) == family]
        if rows:
            fig.add_trace(go.Box(
                x=[family] * len(rows), y=[r["accuracy"] for r in rows], name=family, boxpoints="all",
                jitter=0.4, pointpos=0, marker=dict(color=FAMILY_COLORS.get(family, GREY), size=6),
                text=[_hover(r) for r in rows], hovertemplate="%{text}<br>%{y:.4f}<extra></extra>",
            ))
    baselines = [r for r in done if r["baseline"]]
    if baselines:
        fig.add_trace(_baseline_trace([family_of(r) for r in baselines], [r["accuracy"] for r in baselines],
                                      baselines, labels=False))
    return _layout(fig, "MLP vs CNN: validation accuracy by family", x="family", y="validation accuracy")


def params_figure(data: StudyData) -> go.Figure:
    """Validation accuracy against parameter count (log x), coloured by family; baselines as stars."""
    done = [r for r in data.records
            if r["state"] == "complete" and r["accuracy"] is not None and r["params_count"]]
    if not done:
        return message_figure("no complete trial yet")
    fig = go.Figure()
    for family in sorted({family_of(r) for r in done}):
        rows = [r for r in done if family_of(r) == family and not r["baseline"]]
        if rows:
            fig.add_trace(_scatter(len(rows))(
                x=[r["params_count"] for r in rows], y=[r["accuracy"] for r in rows], mode="markers", name=family,
                marker=dict(color=[FAMILY_COLORS.get(family, GREY) if r["feasible"] else GREY for r in rows],
                            size=9, opacity=0.85),
                text=[_hover(r) for r in rows], hovertemplate="%{text}<br>%{y:.4f}<extra></extra>",
            ))
    baselines = [r for r in done if r["baseline"]]
    if baselines:
        fig.add_trace(_baseline_trace([r["params_count"] for r in baselines], [r["accuracy"] for r in baselines],
                                      baselines))
    budget = data.spec.get("study", {}).get("max_params")
    if budget:
        fig.add_vline(x=budget, line=dict(color=GREY, dash="dash"), annotation_text="parameter budget")
    _layout(fig, "Validation accuracy vs parameter count", x="parameters (log scale)", y="validation accuracy")
    fig.update_xaxes(type="log")
    fig.update_layout(margin=dict(r=90))  # room for the baselines' labels at the right edge
    return fig


# --------------------------------------------------------------------------- Pareto front


def pareto_figure(data: StudyData, *, x: int = 1, y: int = 0) -> go.Figure:
    """Two objectives of a multi-objective study: the Pareto front, other feasible trials, infeasible greyed."""
    done = [r for r in data.records if r["state"] == "complete" and r["values"] is not None]
    if not data.is_multi_objective:
        return message_figure("single-objective study: no Pareto front")
    if not done:
        return message_figure("no complete trial yet")
    front = set(data.pareto_numbers)
    fig = go.Figure()
    groups = [
        ("infeasible", [r for r in done if not r["feasible"]], dict(color=GREY, size=8, symbol="x")),
        ("feasible", [r for r in done if r["feasible"] and r["number"] not in front and not r["baseline"]],
         dict(color="#1f77b4", size=8, opacity=0.7)),
    ]
    for name, rows, marker in groups:
        if rows:
            fig.add_trace(go.Scatter(
                x=[r["values"][x] for r in rows], y=[r["values"][y] for r in rows], mode="markers", name=name,
                marker=marker, text=[_hover(r) for r in rows], hovertemplate="%{text}<extra></extra>",
            ))
    front_rows = sorted((r for r in done if r["number"] in front), key=lambda r: r["values"][x])
    if front_rows:
        fig.add_trace(go.Scatter(
            x=[r["values"][x] for r in front_rows], y=[r["values"][y] for r in front_rows], mode="lines+markers",
            name="Pareto front", line=dict(color="#d62728", shape="hv"), marker=dict(color="#d62728", size=10),
            text=[_hover(r) for r in front_rows], hovertemplate="%{text}<extra></extra>",
        ))
    baselines = [r for r in done if r["baseline"] and r["feasible"] and r["number"] not in front]
    if baselines:
        fig.add_trace(_baseline_trace([r["values"][x] for r in baselines], [r["values"][y] for r in baselines],
                                      baselines))
    xl, yl = _objective_label(data, x), _objective_label(data, y)
    _layout(fig, f"Pareto front: {yl} vs {xl}", x=xl, y=yl)
    if data.metrics[x] == "params":
        fig.update_xaxes(type="log")
    return fig


# --------------------------------------------------------------------------- timeline


def timeline_figure(data: StudyData, *, now: dt.datetime | None = None) -> go.Figure:
    """One bar per trial from its start to its end (now, if still running), coloured by state."""
    now = now or dt.datetime.now()
    started = [r for r in data.records if r["datetime_start"] is not None]
    if not started:
        return message_figure("no trial has started yet")
    fig = go.Figure()
    for state, color in STATE_COLORS.items():
        rows = [r for r in started if r["state"] == state]
        if not rows:
            continue
        ends = [r["datetime_complete"] or now for r in rows]
        fig.add_trace(go.Bar(
            y=[r["number"] for r in rows], base=[r["datetime_start"].isoformat() for r in rows],
            x=[max((e - r["datetime_start"]).total_seconds() * 1000, 1.0) for r, e in zip(rows, ends)],
            orientation="h", name=state, marker_color=color,
            text=[_hover(r) for r in rows], hovertemplate="%{text}<extra></extra>", textposition="none",
        ))
    _layout(fig, "Timeline of trials", x="time", y="trial", height=max(350, min(900, 18 * len(started) + 120)))
    fig.update_xaxes(type="date")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(barmode="overlay", bargap=0.15)
    return fig


# --------------------------------------------------------------------------- trials table


def trials_table(data: StudyData, *, states: Iterable[str] | None = None, families: Iterable[str] | None = None,
                 value_range: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """One row per trial, filtered by state, family and the first objective's value (inclusive range).

    A value range leaves out trials without a value.
    """
    states = set(states) if states is not None else None
    families = set(families) if families is not None else None
    rows = []
    for record in data.records:
        if states is not None and record["state"] not in states:
            continue
        if families is not None and family_of(record) not in families:
            continue
        values = record["values"] if record["state"] in ("complete", "pruned") else None
        if value_range is not None and not (values and value_range[0] <= values[0] <= value_range[1]):
            continue
        row: dict[str, Any] = {"number": record["number"], "state": record["state"]}
        for i, metric in enumerate(data.metrics):
            row[metric] = values[i] if values and i < len(values) else None
        row.update({
            "family": family_of(record) if record["family"] or record["params"] else None,
            "baseline": record["baseline"],
            "params_count": record["params_count"],
            "epochs": record["epoch"],
            "train_seconds": record["train_seconds"],
            "duration_s": None if record["duration_s"] is None else round(record["duration_s"], 2),
            "feasible": record["feasible"],
            "start": record["datetime_start"].isoformat(timespec="seconds") if record["datetime_start"] else None,
            "complete": (record["datetime_complete"].isoformat(timespec="seconds")
                         if record["datetime_complete"] else None),
            "fail_reason": record["fail_reason"],
        })
        row.update({f"param_{k}": v for k, v in record["params"].items()})
        rows.append(row)
    return rows


def table_csv(rows: list[dict[str, Any]]) -> bytes:
    """The rows as CSV (UTF-8), every column any row has; NaN and infinities empty."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()})
    return buffer.getvalue().encode("utf-8")


# --------------------------------------------------------------------------- one trial


def confusion_figure(matrix: list[list[int]]) -> go.Figure:
    """The validation confusion matrix as a heatmap, true class down, predicted across, counts written in."""
    classes = [str(i) for i in range(len(matrix))]
    fig = go.Figure(go.Heatmap(z=matrix, x=classes, y=classes, colorscale="Blues", text=matrix,
                               texttemplate="%{text}", hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    _layout(fig, "Confusion matrix (validation)", x="predicted class", y="true class", legend=False)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", side="bottom")
    return fig


def per_class_figure(per_class: list[float]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[str(i) for i in range(len(per_class))], y=per_class, marker_color="#1f77b4",
                           text=[f"{v:.2f}" for v in per_class], textposition="outside"))
    _layout(fig, "Per-class accuracy (validation)", x="class", y="accuracy", legend=False)
    fig.update_yaxes(range=[0, 1.1])
    fig.update_xaxes(type="category")
    return fig


def trial_curves_figure(record: dict[str, Any]) -> go.Figure:
    """One trial's loss and accuracy per epoch, training and validation."""
    curves = record["curves"] or {}
    if not curves and record["intermediate_values"]:
        inter = record["intermediate_values"]
        curves = {"val_accuracy": [inter[k] for k in sorted(inter)]}
    if not curves:
        return message_figure("no learning curves recorded")
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy", "loss"))
    styles = {"accuracy": ("#1f77b4", "solid"), "val_accuracy": ("#1f77b4", "dash"),
              "loss": ("#d62728", "solid"), "val_loss": ("#d62728", "dash")}
    for key, (color, dash) in styles.items():
        values = curves.get(key)
        if values:
            fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, name=key, mode="lines+markers",
                                     line=dict(color=color, dash=dash)), row=1, col=1 if "accuracy" in key else 2)
    _layout(fig, f"Trial {record['number']}: learning curves", height=420)
    fig.update_xaxes(title_text="epoch")
    return fig


# --------------------------------------------------------------------------- compare


def compare_figure(studies: list[StudyData]) -> go.Figure:
    """Validation accuracy by trial for several studies in one plot, each with its best-so-far line."""
    fig = go.Figure()
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    for i, data in enumerate(studies):
        color = palette[i % len(palette)]
        rows = [r for r in data.records if r["state"] == "complete" and r["accuracy"] is not None]
        if not rows:
            continue
        fig.add_trace(go.Scatter(x=[r["number"] for r in rows], y=[r["accuracy"] for r in rows], mode="markers",
                                 name=f"{data.name}", legendgroup=data.name, marker=dict(color=color, size=7,
                                                                                         opacity=0.6),
                                 text=[_hover(r) for r in rows], hovertemplate="%{text}<br>%{y:.4f}<extra></extra>"))
        best, xs, ys = -math.inf, [], []
        for r in rows:
            if r["feasible"]:
                best = max(best, r["accuracy"])
            if best > -math.inf:
                xs.append(r["number"])
                ys.append(best)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{data.name} best so far", legendgroup=data.name,
                                 line=dict(color=color, shape="hv", width=2)))
    if not fig.data:
        return message_figure("none of these studies has a complete trial yet")
    return _layout(fig, "Validation accuracy by trial", x="trial", y="validation accuracy")


# --------------------------------------------------------------------------- Optuna's own plots


def optuna_figure(kind: str, study: optuna.Study, *, objective: int = 0, objective_name: str | None = None,
                  params: list[str] | None = None) -> tuple[go.Figure | None, str | None]:
    """One of Optuna's plots (``importance``, ``parallel``, ``slice``, ``contour``, ``edf``) or why not.

    Returns ``(figure, None)``, or ``(None, message)`` when the study has too few trials for it.
    """
    if kind not in OPTUNA_PLOTS:
        raise ValueError(f"unknown plot {kind!r}; expected one of {', '.join(OPTUNA_PLOTS)}")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    need = 2 if kind in ("importance", "contour") else 1
    if len(complete) < need:
        return None, f"{_PLOT_NAMES[kind]} needs at least {need} complete trial{'s' if need > 1 else ''}; " \
                     f"this study has {len(complete)}"
    target: Callable[[optuna.trial.FrozenTrial], float] | None = None
    if len(study.directions) > 1:
        target = lambda t: t.values[objective]  # noqa: E731
    name = objective_name or "Objective Value"
    plots = {
        # Optuna's importances drawn by us: its plot_param_importances deep-copies every trial once per
        # parameter for its hover text (38 of 39 s on 10,000 trials; the importances take 0.2 s).
        "importance": lambda: _importance_plot(study, target, name, params),
        "parallel": lambda: optuna.visualization.plot_parallel_coordinate(study, target=target, target_name=name,
                                                                          params=params),
        "slice": lambda: optuna.visualization.plot_slice(study, target=target, target_name=name, params=params),
        "contour": lambda: optuna.visualization.plot_contour(study, target=target, target_name=name,
                                                             params=params),
        "edf": lambda: optuna.visualization.plot_edf(study, target=target, target_name=name),
    }
    try:
        with warnings.catch_warnings(), quiet_optuna():
            warnings.simplefilter("ignore")
            fig = plots[kind]()
    except Exception as exc:  # noqa: BLE001 (Optuna raises many kinds for too-small or odd studies)
        return None, f"{_PLOT_NAMES[kind]} is not available for this study yet: {exc}"
    if not fig.data:
        return None, f"{_PLOT_NAMES[kind]} has nothing to show yet (too few complete trials or parameters)"
    fig.update_layout(uirevision="digitune", template="plotly_white")
    return fig, None


def _importance_plot(study: optuna.Study, target: Callable[[optuna.trial.FrozenTrial], float] | None, name: str,
                     params: list[str] | None) -> go.Figure:
    """Optuna's parameter importances (``get_param_importances``, as its plot computes them), drawn as bars.

    Not ``plot_param_importances``: for its hover text it deep-copies every trial once per
    parameter (38 of its 39 s on 10,000 trials; the importances themselves take 0.2 s).
    """
    importances = optuna.importance.get_param_importances(study, target=target, params=params)
    if not importances:
        raise ValueError("no searched parameter to rank")
    return importances_figure(dict(importances), f"Hyperparameter importances: {name}")


_PLOT_NAMES = {"importance": "Parameter importance", "parallel": "The parallel-coordinate plot",
               "slice": "The slice plot", "contour": "The contour plot", "edf": "The empirical distribution plot"}


def family_importances(data: StudyData, family: str, *, objective: int = 0) -> dict[str, float]:
    """Parameter importances among ``family``'s complete trials only (a sub-study made in memory).

    Raises ``ValueError`` with a message when the family has too few trials or parameters.
    """
    trials = [t for t in data.optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
              if t.params.get("family", data.record(t.number)["family"]) == family]
    if len(trials) < 2:
        raise ValueError(f"needs at least 2 complete trials, has {len(trials)}")
    params = sorted({name for t in trials for name in t.params if name != "family"})
    varied = [p for p in params if len({repr(t.params.get(p)) for t in trials}) > 1]
    if not varied:
        raise ValueError("no parameter varies among its complete trials")
    sub = in_memory_study(data.directions, f"{data.name}/{family}",
                          (t for t in trials if all(p in t.params for p in varied)))
    if len(sub.trials) < 2:
        raise ValueError("too few complete trials share the same searched parameters")
    target = (lambda t: t.values[objective]) if data.is_multi_objective else None
    with warnings.catch_warnings(), quiet_optuna():
        warnings.simplefilter("ignore")
        return dict(optuna.importance.get_param_importances(sub, target=target, params=varied))


def importances_figure(importances: dict[str, float], title: str) -> go.Figure:
    """Importances as horizontal bars, the most important on top."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker_color="#1f77b4", text=[f"{v:.2f}" for _, v in items], textposition="outside"))
    _layout(fig, title, x="importance", legend=False, height=max(250, 40 * len(items) + 120))
    fig.update_xaxes(range=[0, max([v for _, v in items] + [0.1]) * 1.2])
    return fig
