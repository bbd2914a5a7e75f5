"""A new study's first trials: the tutorial presets, an earlier study's best (warm start), the known-good start."""

from __future__ import annotations

from typing import Any

import optuna

from digitune.models import PRESET_NAMES, ConfigError, TrainConfig, model_config_from_dict

from .._final import ranked_trials
from .._schema import BASELINE_ATTR, START_ATTR, WARM_ATTR
from .._space import default_params, move_into_space
from .._spec import StudySpec
from ._load import load_study


def warm_start_params(spec: StudySpec, storage: optuna.storages.BaseStorage,
                      image_shape: tuple[int, ...]) -> list[tuple[str, dict[str, Any]]]:
    """``(origin, params)`` for the best ``spec.warm_start_top`` trials of the study ``spec.warm_start``.

    Read before anything is stored, so a mistyped name (``StudyNotFoundError``) changes
    nothing. Trials of a family this study does not search, or whose CNN cannot fit the
    images, are skipped; two that move to the same parameters are queued once.
    """
    if not spec.warm_start:
        return []
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


def enqueue_first_trials(study: optuna.Study, spec: StudySpec, image_shape: tuple[int, ...], *,
                          new: bool, warm: list | None = None) -> None:
    """Queue the tutorial presets (tagged ``baseline``) and, in a ``new`` study, the warm start and the space's defaults.

    The presets are queued once per study, whenever one is missing. With ``start =
    "defaults"`` a new study's next trials are a known-good model per family from its own
    space (``default_params``), tagged ``start``: a short budget starts from a good model
    instead of a random draw. Before them, ``warm`` (``warm_start_params``): an earlier
    study's best configurations, tagged ``warm_start``. They are ordinary trials otherwise
    (the pruner may stop them), queued only when the study is created, so a resumed study is
    not sent back.
    """
    if spec.baselines == "tutorial":
        done = {t.user_attrs.get(BASELINE_ATTR) for t in study.get_trials(deepcopy=False)}
        for name in PRESET_NAMES:
            if name not in done:
                study.enqueue_trial({}, user_attrs={BASELINE_ATTR: name})
    if new:
        for origin, params in (warm or [])[:spec.trials]:
            study.enqueue_trial(params, user_attrs={WARM_ATTR: origin})
    if new and spec.start == "defaults" and spec.sampler != "grid":
        for params in default_params(spec, image_shape)[:spec.trials]:  # none left waiting in a tiny study
            study.enqueue_trial(params, user_attrs={START_ATTR: "defaults"})
