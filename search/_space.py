"""The conditional search space: a trial's parameters turned into model and training configs.

The family (MLP or CNN) is sampled first; each family's parameters are named with its
prefix (``mlp_units``, ``cnn_filters``), so Optuna sees them as conditional parameters
with their own distributions. Constants in the study file are not sampled.
"""

from __future__ import annotations

from typing import Any

import optuna

from digitune.models import HIGHEST, MODEL_CONFIGS, CNNConfig, ConfigError, ConvBlock, Knob, ModelConfig, TrainConfig

from ._spec import FAMILIES, MAX_SEED, Choice, Param, Range, SpecError, StudySpec, family_knobs


def trial_seed(spec: StudySpec, number: int) -> int:
    """Trial ``number``'s training seed: the study's seed plus the number, kept within the seeds NumPy takes."""
    return (spec.seed + number) % (MAX_SEED + 1)


def _suggest(trial: optuna.Trial, name: str, param: Param) -> Any:
    if isinstance(param, Choice):
        return trial.suggest_categorical(name, list(param.choices))
    if isinstance(param, Range):
        if param.is_int:
            return trial.suggest_int(name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
        return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
    return param


def sample_configs(trial: optuna.Trial, spec: StudySpec) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs for ``trial`` from the study's search space."""
    family = _suggest(trial, "family", spec.space["family"])
    knobs = family_knobs(family)
    values = {name: _as_kind(_suggest(trial, f"{family}_{name}", param), knobs[name])
              for name, param in spec.family_space[family].items()}
    model = MODEL_CONFIGS[family].from_search(values)
    train = TrainConfig(seed=trial_seed(spec, trial.number), **{
        name: _as_kind(_suggest(trial, name, spec.space[name]), knob)
        for name, knob in TrainConfig.search_knobs().items()})
    return model, train


def _as_kind(value: Any, knob: Knob) -> Any:
    """A float knob's value as a float (a study file may write ``1`` for ``1.0``)."""
    return float(value) if knob.kind == "float" else value


# Known-good settings are each knob's ``start`` in models' configs (after Keras' own defaults,
# Adam at 1e-3 and batches of 32, and its MNIST examples); ``default_params`` moves each into
# the study's space: the nearest choice, or the range's nearest value.


def _nearest(param: Param, preferred: Any) -> Any:
    """``preferred`` if ``param`` allows it, else the value of ``param`` closest to it."""
    if isinstance(param, Choice):
        if preferred in param.choices:
            return preferred
        numbers = [c for c in param.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if numbers and isinstance(preferred, (int, float)):
            return min(numbers, key=lambda c: abs(c - preferred))
        return param.choices[0]
    assert isinstance(param, Range)
    value = min(max(preferred, param.low), param.high)
    if param.step:
        value = param.low + round((value - param.low) / param.step) * param.step
        value = min(value, param.high)
    return int(round(value)) if param.is_int else float(value)


def _start(param: Param, knob: Knob) -> Any:
    """The knob's known-good ``start`` moved into ``param`` (``HIGHEST``: the high end)."""
    if knob.start is HIGHEST:
        return max(param.choices) if isinstance(param, Choice) else _nearest(param, param.high)
    return _nearest(param, knob.start)


def default_params(spec: StudySpec, image_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """One known-good trial per family, as Optuna parameters of ``spec``'s space; cheapest family first.

    Only sampled parameters appear (constants are the study file's own); a CNN default that
    cannot fit ``image_shape`` is left out.
    """
    common = {name: _start(spec.space[name], knob) for name, knob in TrainConfig.search_knobs().items()
              if isinstance(spec.space[name], (Range, Choice))}
    points = []
    for family in sorted(spec.families(), key=FAMILIES.index):
        params = dict(common)
        if isinstance(spec.space["family"], Choice):
            params["family"] = family
        for name, param in spec.family_space[family].items():
            if isinstance(param, (Range, Choice)):
                params[f"{family}_{name}"] = _start(param, family_knobs(family)[name])
        if _fits(params, spec, image_shape, family):
            points.append(params)
    return points


def _fits(params: dict[str, Any], spec: StudySpec, image_shape: tuple[int, ...], family: str) -> bool:
    """Whether the model of ``family`` that ``params`` give fits images of ``image_shape`` (only a CNN may not)."""
    if family != "cnn":
        return True
    try:
        _configs_from(params, spec).feature_map_sizes(image_shape)
    except ConfigError:
        return False
    return True


def _configs_from(params: dict[str, Any], spec: StudySpec) -> ModelConfig:
    fixed = optuna.trial.FixedTrial(params)
    return sample_configs(fixed, spec)[0]


def check_space_fits(spec: StudySpec, image_shape: tuple[int, ...]) -> None:
    """Refuse a CNN space in which no config fits the images, before any trial runs.

    Tries the CNN that shrinks the feature map least (fewest blocks and convs, smallest
    kernel, stride and pool, 'same' padding where allowed). If even that one cannot fit,
    ``SpecError``; if only some configs cannot, those trials fail alone with their reason.
    """
    params = spec.family_space.get("cnn")
    if params is None:
        return

    def least(name: str) -> Any:
        param = params[name]
        if isinstance(param, Choice):
            if name == "padding":
                return "same" if "same" in param.choices else "valid"
            if name == "pool":
                return "none" if "none" in param.choices else param.choices[0]
            return min(param.choices)
        if isinstance(param, Range):
            return int(param.low)
        return param

    block = ConvBlock(filters=1, convs=least("convs"), kernel_size=least("kernel_size"), stride=least("stride"),
                      padding=least("padding"), pool=least("pool"), pool_size=least("pool_size"))
    try:
        CNNConfig(blocks=(block,) * least("blocks")).feature_map_sizes(image_shape)
    except ConfigError as exc:
        raise SpecError(
            f"{spec.path or 'the study'}: [space.cnn] cannot fit {image_shape[0]}x{image_shape[1]} images with any "
            f"of its configs ({exc}); allow padding = \"same\", smaller kernels, fewer convs or blocks") from exc


def move_into_space(model: ModelConfig, train: TrainConfig, spec: StudySpec,
                    image_shape: tuple[int, ...]) -> dict[str, Any] | None:
    """A trial's configs as Optuna parameters of ``spec``'s space, each value moved to its nearest allowed one.

    Only sampled parameters appear. None when ``spec`` does not search the model's family,
    or the moved CNN cannot fit ``image_shape``.
    """
    if model.family not in spec.families():
        return None
    params: dict[str, Any] = {"family": model.family} if isinstance(spec.space["family"], Choice) else {}
    trained = train.to_dict()
    params.update({name: _nearest(param, trained[name]) for name, param in spec.space.items()
                   if name != "family" and isinstance(param, (Range, Choice))})
    values = model.search_values()
    params.update({f"{model.family}_{name}": _nearest(param, values[name])
                   for name, param in spec.family_space[model.family].items() if isinstance(param, (Range, Choice))})
    return params if _fits(params, spec, image_shape, model.family) else None
