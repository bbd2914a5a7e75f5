"""The trials table and one trial's figures (confusion matrix, per-class accuracy, curves), and studies compared."""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Iterable

import plotly.graph_objects as go

from ._data import StudyData, family_of
from ._style import hover, layout, message_figure


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
    layout(fig, "Confusion matrix (validation)", x="predicted class", y="true class", legend=False)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", side="bottom")
    return fig


def per_class_figure(per_class: list[float]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[str(i) for i in range(len(per_class))], y=per_class, marker_color="#1f77b4",
                           text=[f"{v:.2f}" for v in per_class], textposition="outside"))
    layout(fig, "Per-class accuracy (validation)", x="class", y="accuracy", legend=False)
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
    layout(fig, f"Trial {record['number']}: learning curves", height=420)
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
                                 text=[hover(r) for r in rows], hovertemplate="%{text}<br>%{y:.4f}<extra></extra>"))
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
    return layout(fig, "Validation accuracy by trial", x="trial", y="validation accuracy")
