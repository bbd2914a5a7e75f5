"""What the pages show of a study, as plain rows: its summary, running trials, curves, comparisons, a model's layers."""

from __future__ import annotations

import copy
import json
from typing import Any

from digitune.search import MANIFEST_ATTR, SPEC_ATTR

from ._data import STATES, StudyData


def study_row(data: StudyData) -> dict[str, Any]:
    """A study for the Studies page; the keys of :func:`search.list_studies` plus live and objective details."""
    counts = {state: 0 for state in STATES}
    for record in data.records:
        counts[record["state"]] += 1
    activity = [r["datetime_complete"] or r["datetime_start"] for r in data.records if r["datetime_start"]]
    best = data.best
    running = running_trials(data)
    return {
        "name": data.name,
        "directions": data.directions,
        "objectives": data.objectives,
        "dataset": data.dataset.get("name"),
        "digitune": SPEC_ATTR in data.user_attrs,
        "trials": counts,
        "n_trials": len(data.records),
        "best_value": best["value"] if best else None,
        "best_trial": best["number"] if best else None,
        "pareto_size": len(data.pareto_numbers) if data.is_multi_objective else None,
        "last_activity": max(activity).isoformat(timespec="seconds") if activity else None,
        "running_now": any(r["alive"] for r in running),
        "running": running,
    }


def running_trials(data: StudyData) -> list[dict[str, Any]]:
    """Running trials: number, family, epochs done so far, last reported value, whether the worker is alive."""
    rows = []
    for record in data.records:
        if record["state"] != "running":
            continue
        inter = record["intermediate_values"]
        rows.append({
            "number": record["number"],
            "family": record["family"] or record["params"].get("family"),
            "epoch": record["epoch"],
            "last_value": inter[max(inter)] if inter else None,
            "started": record["datetime_start"],
            "alive": data.alive.get(record["number"], False),
        })
    return rows


def study_summary(data: StudyData) -> dict[str, Any]:
    """The Study page's header: objectives, dataset, counts, best trial or Pareto front, sampler and pruner."""
    row = study_row(data)
    spec = data.spec.get("study", {})
    best = data.best
    return {
        **row,
        "sampler": spec.get("sampler"),
        "pruner": spec.get("pruner"),
        "target_trials": spec.get("trials"),
        "max_params": spec.get("max_params"),
        "best": best,
        "pareto_front": [data.record(n) for n in data.pareto_numbers],
        "dataset_info": data.dataset,
        "manifest": data.user_attrs.get(MANIFEST_ATTR),
    }


def learning_curves(data: StudyData, metric: str = "val_accuracy") -> list[dict[str, Any]]:
    """Per trial, ``metric`` per epoch: from the stored curves, or the reported values while it runs.

    Each entry: number, state, family, baseline, values (epoch 1 first), final, best.
    Trials with no epoch yet are left out.
    """
    maximize = "accuracy" in metric
    curves = []
    for record in data.records:
        values = list((record["curves"] or {}).get(metric) or [])
        if not values and metric == "val_accuracy" and record["intermediate_values"]:
            inter = record["intermediate_values"]
            values = [inter[k] for k in sorted(inter)]
        if not values:
            continue
        curves.append({
            "number": record["number"],
            "state": record["state"],
            "family": record["family"],
            "baseline": record["baseline"],
            "values": values,
            "final": values[-1],
            "best": max(values) if maximize else min(values),
        })
    return curves


def compare_rows(studies: list[StudyData]) -> list[dict[str, Any]]:
    """One summary row per study for the Compare page."""
    rows = []
    for data in studies:
        row = study_row(data)
        best = data.best
        complete = [r for r in data.records if r["state"] == "complete"]
        accuracies = [r["accuracy"] for r in complete if r["accuracy"] is not None]
        seconds = [r["duration_s"] for r in data.records if r["duration_s"] is not None]
        rows.append({
            "study": data.name,
            "dataset": row["dataset"],
            "objectives": ", ".join(data.objectives),
            "trials": row["n_trials"],
            "complete": row["trials"]["complete"],
            "pruned": row["trials"]["pruned"],
            "failed": row["trials"]["fail"],
            "best value": row["best_value"],
            "best trial": row["best_trial"],
            "best family": best["family"] if best else None,
            "best params": best["params_count"] if best else None,
            "Pareto front": row["pareto_size"],
            "best accuracy": max(accuracies) if accuracies else None,
            "total hours": round(sum(seconds) / 3600, 3) if seconds else 0.0,
        })
    return rows


def model_layers(model_config: dict[str, Any], image_shape: tuple[int, ...]) -> dict[str, Any]:
    """The Keras model a trial trained, rebuilt from its stored config: one row per layer and the totals.

    Builds (never trains) the model with :func:`models.build_model`, so Keras is imported
    on the first call.
    """
    from digitune.models import build_model, model_config_from_dict

    config = model_config_from_dict(copy.deepcopy(model_config))
    model = build_model(config, tuple(image_shape))
    layers = []
    for layer in model.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            shape = None
        layers.append({
            "layer": layer.name,
            "type": type(layer).__name__,
            "output shape": "" if shape is None else "(" + ", ".join("None" if d is None else str(d)
                                                                        for d in shape) + ")",
            "params": int(layer.count_params()),
        })
    result = {"layers": layers, "total_params": int(model.count_params()),
              "input_shape": list(image_shape), "config": json.loads(json.dumps(model_config))}
    _clear_keras()
    return result


def _clear_keras() -> None:
    try:
        from digitune.models import clear_state

        clear_state()
    except Exception:  # noqa: BLE001 (clearing is only tidiness)
        pass
