"""Warm start: an earlier study's best configurations, moved into this study's space, queued first."""

from __future__ import annotations

from typing import Any

import optuna

from digitune.models import ConfigError, TrainConfig, model_config_from_dict

from ._final import ranked_trials
from ._space import move_into_space
from ._spec import StudySpec

WARM_ATTR = "warm_start"  # on a queued trial: "STUDY:NUMBER", the earlier trial it came from


def warm_start_params(spec: StudySpec, storage: optuna.storages.BaseStorage,
                      image_shape: tuple[int, ...]) -> list[tuple[str, dict[str, Any]]]:
    """``(origin, params)`` for the best ``spec.warm_start_top`` trials of the study ``spec.warm_start``.

    Read before anything is stored, so a mistyped name (``StudyNotFoundError``) changes
    nothing. Trials of a family this study does not search, or whose CNN cannot fit the
    images, are skipped; two that move to the same parameters are queued once.
    """
    if not spec.warm_start:
        return []
    from ._runner import load_study

    earlier = load_study(spec.warm_start, storage)
    points: list[tuple[str, dict[str, Any]]] = []
    for trial in ranked_trials(earlier):
        try:
            model = model_config_from_dict(trial.user_attrs["model_config"])
            train = TrainConfig.from_dict(trial.user_attrs["train_config"])
        except (KeyError, TypeError, ConfigError):  # not a digitune trial, or a config this version cannot read
            continue
        params = move_into_space(model, train, spec, image_shape)
        if params is not None and all(params != p for _, p in points):
            points.append((f"{earlier.study_name}:{trial.number}", params))
        if len(points) == spec.warm_start_top:
            break
    return points

