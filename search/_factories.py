"""The spec's sampler and pruner, with their options; one place builds each."""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
import optuna

from ._optuna_private import SharedCacheHyperband
from ._spec import Choice, Param, Range, SpecError, StudySpec


def make_sampler(spec: StudySpec, *, stream: tuple[int, ...] = ()) -> optuna.samplers.BaseSampler:
    """The spec's sampler with its ``sampler_options``, seeded from ``spec.seed`` and ``stream``.

    A new study's sampler is seeded with ``spec.seed`` itself. A resumed study passes the
    number of trials it already holds (and a worker its process id) as ``stream``; the seed
    then comes from NumPy's ``SeedSequence`` of all of them, so resumed runs and concurrent
    workers draw new, distinct parameters instead of repeating each other's.
    """
    seed = int(np.random.SeedSequence([spec.seed, *stream]).generate_state(1)[0]) if stream else spec.seed
    options = dict(spec.sampler_options)
    if spec.sampler == "grid":
        factory: Callable[..., optuna.samplers.BaseSampler] = optuna.samplers.GridSampler
        options.setdefault("search_space", grid_search_space(spec, points=options.pop("points", 4)))
    else:
        factory = {
            "tpe": optuna.samplers.TPESampler,
            "random": optuna.samplers.RandomSampler,
            "qmc": optuna.samplers.QMCSampler,
            "cmaes": optuna.samplers.CmaEsSampler,
            "gp": optuna.samplers.GPSampler,
            "nsga2": optuna.samplers.NSGAIISampler,
        }[spec.sampler]
        if spec.sampler in ("qmc", "cmaes", "gp"):
            options.setdefault("independent_sampler", optuna.samplers.RandomSampler(seed=seed))
            options.setdefault("warn_independent_sampling", False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factory(seed=seed, **options)
    except TypeError as exc:
        raise SpecError(f"{spec.path or 'study'}: study.sampler_options do not fit the {spec.sampler} sampler: "
                        f"{exc}") from exc


def grid_search_space(spec: StudySpec, *, points: int = 4) -> dict[str, list[Any]]:
    """Every searched parameter as a list for the grid sampler: choices as they are, ranges as ``points`` values."""
    def values(param: Param) -> list[Any]:
        if isinstance(param, Choice):
            return list(param.choices)
        assert isinstance(param, Range)
        if param.is_int and param.high - param.low + 1 <= points:
            return list(range(int(param.low), int(param.high) + 1))
        grid = np.geomspace(param.low, param.high, points) if param.log else np.linspace(param.low, param.high, points)
        return sorted({int(round(v)) for v in grid}) if param.is_int else [float(v) for v in grid]

    space = {name: values(p) for name, p in spec.space.items() if isinstance(p, (Range, Choice))}
    for family, params in spec.family_space.items():
        space.update({f"{family}_{name}": values(p) for name, p in params.items() if isinstance(p, (Range, Choice))})
    return space


def make_pruner(spec: StudySpec, train_images: int | None = None) -> optuna.pruners.BasePruner:
    """The spec's pruner with its ``pruner_options``; epochs are the resource.

    With ``fidelity = "time"`` a trial's steps count epochs' worth of the study's typical
    training time rather than its own epochs (``search/_fidelity.py``); the pruner is the same.

    ``train_images``, the size of an epoch when the data is loaded, sets Hyperband's and
    successive halving's fewest epochs before stopping a trial (``_min_resource``).
    """
    options = dict(spec.pruner_options)
    if spec.is_multi_objective or spec.pruner == "none":
        return optuna.pruners.NopPruner()  # multi-objective trials stop early by their own rule instead
    defaults: dict[str, dict[str, Any]] = {
        "hyperband": {"min_resource": _min_resource(spec, train_images), "max_resource": max(spec.max_epochs, 2),
                      "reduction_factor": 3},
        "median": {"n_startup_trials": 5, "n_warmup_steps": 1},
        "successive-halving": {"min_resource": _min_resource(spec, train_images), "reduction_factor": 3},
        "percentile": {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": 1},
        "threshold": {"lower": 0.2, "n_warmup_steps": 1} if spec.directions[0] == "maximize" else {"upper": 10.0},
    }
    factory = {
        "hyperband": SharedCacheHyperband,
        "median": optuna.pruners.MedianPruner,
        "successive-halving": optuna.pruners.SuccessiveHalvingPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "threshold": optuna.pruners.ThresholdPruner,
    }[spec.pruner]
    try:
        return factory(**{**defaults[spec.pruner], **options})
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{spec.path or 'study'}: study.pruner_options do not fit the {spec.pruner} pruner: "
                        f"{exc}") from exc


# Images a model should have trained on before a pruner judges it (three epochs of the 8x8 digits).
JUDGE_AFTER_IMAGES = 3000


def _min_resource(spec: StudySpec, train_images: int | None = None) -> int:
    """Hyperband's and successive halving's ``min_resource``, in epochs: 1 to 3.

    Why it is built this way: docs/internals.md, "search/_factories.py _min_resource".
    """
    most = max(1, min(3, spec.max_epochs // 3))
    if not train_images:
        return most
    return max(1, min(most, math.ceil(JUDGE_AFTER_IMAGES / train_images)))
