"""The queue and the agents as table rows and a Plotly figure: pure functions over ``search``'s records."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

QUEUE_STATE_COLORS = {"queued": "#9467bd", "running": "#1f77b4", "done": "#2ca02c", "stopped": "#7f7f7f",
                      "failed": "#d62728"}


def queue_rows(entries: list, agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per submitted study, most urgent first, with the agents working on it now."""
    rows = []
    for e in entries:
        on_it = [a["id"] for a in agents if a.get("study") == e.name and a["status"] == "working"]
        used = e.seconds_used()
        rows.append({
            "priority": e.priority,
            "study": e.name,
            "state": e.state,
            "trials": f"{e.finished}/{e.trials}",
            "running": e.running,
            "failed": e.failed,
            "time used (s)": None if used is None else round(used),
            "time budget (s)": e.timeout,
            "best value": e.best,
            "agents": ", ".join(on_it),
            "note": e.reason or "",
        })
    return rows


def agent_rows(agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per registered agent: live ones first, lost and exited ones after."""
    return [{
        "agent": a["id"],
        "status": a["status"],
        "devices": a.get("devices"),
        "study": a.get("study") or "",
        "trial": a.get("trial"),
        "trials run": a.get("trials_run", 0),
        "last heartbeat (s ago)": a.get("heartbeat_age"),
        "refused": "; ".join(f"{k}: {v}" for k, v in (a.get("refused") or {}).items()),
    } for a in agents]


def queue_figure(entries: list) -> go.Figure:
    """Budget used per submitted study (finished of its trials), coloured by state, most urgent on top."""
    fig = go.Figure()
    ordered = list(reversed(entries))  # Plotly draws the first bar at the bottom
    for state, color in QUEUE_STATE_COLORS.items():
        picked = [e for e in ordered if e.state == state]
        if not picked:
            continue
        fig.add_trace(go.Bar(
            y=[e.name for e in picked], x=[100 * min(e.finished / e.trials, 1.0) for e in picked],
            orientation="h", name=state, marker_color=color,
            text=[f"{e.finished}/{e.trials}" + (f" ({e.running} running)" if e.running else "") for e in picked],
            textposition="auto",
            hovertemplate="%{y}: %{text}<extra>" + state + "</extra>"))
    fig.update_layout(title=dict(text="Budget used", x=0.01), template="plotly_white", barmode="overlay",
                      height=max(220, 60 + 40 * len(entries)), uirevision="digitune",
                      margin=dict(l=60, r=20, t=50, b=40),
                      legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0))
    fig.update_xaxes(title_text="% of trial budget finished", range=[0, 100])
    fig.update_yaxes(categoryorder="array", categoryarray=[e.name for e in ordered])
    return fig
