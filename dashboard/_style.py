"""The dashboard's figure style: colours, markers, the layout every figure shares, an empty figure's message."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from ._data import StudyData, family_of

FAMILY_COLORS = {"mlp": "#1f77b4", "cnn": "#ff7f0e", "?": "#7f7f7f"}
STATE_COLORS = {"complete": "#2ca02c", "pruned": "#ff9f1c", "fail": "#d62728", "running": "#1f77b4",
                "waiting": "#9467bd"}
GREY = "#b0b0b0"
BASELINE_MARKER = dict(symbol="star", size=15, color="#e6b800", line=dict(width=1, color="#5a4500"))
MANY_CURVES = 150  # beyond this many, curves are drawn as one trace per style rather than one per trial
MANY_POINTS = 3000


def layout(fig: go.Figure, title: str, *, x: str | None = None, y: str | None = None, height: int = 450,
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
    return layout(fig, "", height=250, legend=False)


def objective_label(data: StudyData, index: int) -> str:
    return data.objectives[index] if index < len(data.objectives) else f"objective {index}"


def hover(record: dict[str, Any]) -> str:
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
