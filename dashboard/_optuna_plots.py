"""Optuna's own plots (importances, parallel coordinates, slice, contour, EDF), wrapped for the dashboard.

A study with too few trials gives a message figure instead of an exception.
"""

from __future__ import annotations

import warnings
from typing import Callable

import optuna
import plotly.graph_objects as go

from ._data import StudyData, in_memory_study, quiet_optuna
from ._style import layout

OPTUNA_PLOTS = ("importance", "parallel", "slice", "contour", "edf")


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
    layout(fig, title, x="importance", legend=False, height=max(250, 40 * len(items) + 120))
    fig.update_xaxes(range=[0, max([v for _, v in items] + [0.1]) * 1.2])
    return fig
