"""Plotly figures of a study from the dashboard's records: pure functions, no Streamlit, no storage.

Every figure keeps the user's zoom across live refreshes (``uirevision``, ``_style.layout``).
A trial's own figures and the trials table are in ``_details``; Optuna's plots in ``_optuna_plots``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import plotly.graph_objects as go

from ._data import StudyData, family_of
from ._style import (BASELINE_MARKER, FAMILY_COLORS, GREY, MANY_CURVES, MANY_POINTS, STATE_COLORS, hover, layout,
                     message_figure, objective_label)


# --------------------------------------------------------------------------- history


def history_figure(data: StudyData, *, objective: int = 0, log_y: bool = False) -> go.Figure:
    """Every complete trial's value by trial number, the best so far as a line, tutorial baselines as stars.

    Infeasible trials (over a constraint) are greyed and never count as best.
    """
    direction = data.directions[objective]
    done = [r for r in data.records if r["state"] == "complete" and r["values"] is not None]
    label = objective_label(data, objective)
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
    layout(fig, f"Optimization history: {label}", x="trial", y=label)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _scatter(count: int) -> type:
    """WebGL scatter for big studies: SVG gets slow in the browser beyond a few thousand points."""
    return go.Scattergl if count > MANY_POINTS else go.Scatter


def _points(rows: list[dict[str, Any]], objective: int, name: str, marker: dict[str, Any]) -> go.Scatter:
    return _scatter(len(rows))(x=[r["number"] for r in rows], y=[r["values"][objective] for r in rows], mode="markers",
                      name=name, marker=dict(opacity=0.85, **marker), text=[hover(r) for r in rows],
                      hovertemplate="%{text}<br>%{y:.4g}<extra></extra>")


def _baseline_trace(x: list[Any], y: list[Any], records: list[dict[str, Any]], *, name: str = "tutorial baselines",
                    labels: bool = True) -> go.Scatter:
    return go.Scatter(
        x=x, y=y, mode="markers+text" if labels else "markers", name=name, marker=BASELINE_MARKER, cliponaxis=False,
        text=[r["baseline"] for r in records], textposition="top center", textfont=dict(size=10),
        hovertext=[hover(r) for r in records], hovertemplate="%{hovertext}<br>%{y:.4g}<extra></extra>",
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
    layout(fig, f"Learning curves ({shown})", x="epoch", y=metric, legend=len(fig.data) <= 40)
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
                text=[hover(r) for r in rows], hovertemplate="%{text}<br>%{y:.4f}<extra></extra>",
            ))
    baselines = [r for r in done if r["baseline"]]
    if baselines:
        fig.add_trace(_baseline_trace([family_of(r) for r in baselines], [r["accuracy"] for r in baselines],
                                      baselines, labels=False))
    return layout(fig, "MLP vs CNN: validation accuracy by family", x="family", y="validation accuracy")


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
                text=[hover(r) for r in rows], hovertemplate="%{text}<br>%{y:.4f}<extra></extra>",
            ))
    baselines = [r for r in done if r["baseline"]]
    if baselines:
        fig.add_trace(_baseline_trace([r["params_count"] for r in baselines], [r["accuracy"] for r in baselines],
                                      baselines))
    budget = data.spec.get("study", {}).get("max_params")
    if budget:
        fig.add_vline(x=budget, line=dict(color=GREY, dash="dash"), annotation_text="parameter budget")
    layout(fig, "Validation accuracy vs parameter count", x="parameters (log scale)", y="validation accuracy")
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
                marker=marker, text=[hover(r) for r in rows], hovertemplate="%{text}<extra></extra>",
            ))
    front_rows = sorted((r for r in done if r["number"] in front), key=lambda r: r["values"][x])
    if front_rows:
        fig.add_trace(go.Scatter(
            x=[r["values"][x] for r in front_rows], y=[r["values"][y] for r in front_rows], mode="lines+markers",
            name="Pareto front", line=dict(color="#d62728", shape="hv"), marker=dict(color="#d62728", size=10),
            text=[hover(r) for r in front_rows], hovertemplate="%{text}<extra></extra>",
        ))
    baselines = [r for r in done if r["baseline"] and r["feasible"] and r["number"] not in front]
    if baselines:
        fig.add_trace(_baseline_trace([r["values"][x] for r in baselines], [r["values"][y] for r in baselines],
                                      baselines))
    xl, yl = objective_label(data, x), objective_label(data, y)
    layout(fig, f"Pareto front: {yl} vs {xl}", x=xl, y=yl)
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
            text=[hover(r) for r in rows], hovertemplate="%{text}<extra></extra>", textposition="none",
        ))
    layout(fig, "Timeline of trials", x="time", y="trial", height=max(350, min(900, 18 * len(started) + 120)))
    fig.update_xaxes(type="date")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(barmode="overlay", bargap=0.15)
    return fig
