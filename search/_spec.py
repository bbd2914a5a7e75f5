"""Study definition files: TOML parsed into a validated, frozen ``StudySpec``.

Why it is built this way: docs/internals.md, "search/_spec.py".
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitune.models import MODEL_CONFIGS, Knob, TrainConfig

from ._spec_values import (Choice, Param, Range, SpecError, choice_value, int_value, params_of, table,
                           unknown_keys)

SAMPLERS = ("tpe", "random", "grid", "qmc", "cmaes", "gp", "nsga2")
PRUNERS = ("hyperband", "median", "successive-halving", "percentile", "threshold", "none")
FIDELITIES = ("epochs", "time")  # what the pruner's steps count (see search/_fidelity.py)
# What a trial can be judged on, and the direction it goes by default.
METRICS = {
    "val_accuracy": "max",   # validation accuracy after the last epoch
    "val_loss": "min",
    "params": "min",         # the model's parameter count
    "train_seconds": "min",  # wall time of model.fit
    "latency_ms": "min",     # inference time per image, measured on the validation set
}
FAMILIES = tuple(MODEL_CONFIGS)  # ("mlp", "cnn")
BASELINES = ("none", "tutorial")
STARTS = ("defaults", "sampler")  # first trials: a known-good model per family, or what the sampler draws
MAX_SEED = 2**32 - 1  # NumPy's and scikit-learn's random states take seeds 0 .. 2**32 - 1
MAX_NAME_LENGTH = 512  # Optuna's studies.study_name column is VARCHAR(512)


# Every parameter a study file's [space] names is a field of a config in models, declared once
# there with its kind, bounds, the value an omitted key means, and its known-good start.
_FAMILY_KNOB = Knob("str", choices=FAMILIES, space=Choice(FAMILIES), start=None)


def common_knobs() -> dict[str, Knob]:
    """``[space]``'s parameters: the family, then the training recipe's (``TrainConfig``)."""
    return {"family": _FAMILY_KNOB, **TrainConfig.search_knobs()}


def family_knobs(family: str) -> dict[str, Knob]:
    """``[space.<family>]``'s parameters (``MLPConfig``, ``CNNConfig``)."""
    return MODEL_CONFIGS[family].search_knobs()


_STUDY_KEYS = {"name", "metric", "objectives", "trials", "timeout", "sampler", "sampler_options", "pruner",
               "pruner_options", "fidelity", "seed", "max_params", "baselines", "start", "early_stopping",
               "save_models", "warm_start", "warm_start_top", "workers"}
_DATA_KEYS = {"source", "validation_split", "seed", "center", "limit"}


@dataclass(frozen=True)
class DataSpec:
    source: str = "digits"
    validation_split: float = 0.3
    seed: int = 128
    center: bool = False
    limit: int | None = None

    def load_kwargs(self) -> dict[str, Any]:
        return {"validation_split": self.validation_split, "seed": self.seed, "center": self.center,
                "limit": self.limit}


@dataclass(frozen=True)
class StudySpec:
    name: str
    objectives: tuple[str, ...] = ("val_accuracy:max",)
    trials: int = 20
    timeout: float | None = None
    sampler: str = "tpe"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    pruner: str = "hyperband"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    fidelity: str = "epochs"
    seed: int = 128
    max_params: int | None = None
    baselines: str = "none"
    start: str = "defaults"
    early_stopping: int = 0
    save_models: int = 3
    warm_start: str | None = None  # an earlier study whose best configurations are queued first
    warm_start_top: int = 3
    workers: int | None = None  # run's CPU worker processes when neither --workers nor $DIGITUNE_WORKERS says
    data: DataSpec = field(default_factory=DataSpec)
    space: dict[str, Param] = field(default_factory=dict)
    family_space: dict[str, dict[str, Param]] = field(default_factory=dict)
    path: str = ""

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(o.split(":")[0] for o in self.objectives)

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple("maximize" if o.endswith(":max") else "minimize" for o in self.objectives)

    @property
    def metric(self) -> str:
        """The first (for single-objective studies, the only) metric."""
        return self.metrics[0]

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def max_epochs(self) -> int:
        epochs = self.space["epochs"]
        if isinstance(epochs, Range):
            return int(epochs.high)
        if isinstance(epochs, Choice):
            return int(max(epochs.choices))
        return int(epochs)

    def families(self) -> tuple[str, ...]:
        family = self.space["family"]
        return tuple(family.choices) if isinstance(family, Choice) else (family,)

    def search_definition(self) -> dict[str, Any]:
        """What defines the search (not its budget): two runs may share a study only if these agree."""
        return {
            "objectives": list(self.objectives),
            "sampler": self.sampler,
            "sampler_options": self.sampler_options,
            "pruner": self.pruner,
            "pruner_options": self.pruner_options,
            "fidelity": self.fidelity,
            "max_params": self.max_params,
            "early_stopping": self.early_stopping,
            "seed": self.seed,
            "data": {"source": self.data.source, **self.data.load_kwargs()},
            "space": {k: _param_json(v) for k, v in self.space.items()},
            "family_space": {f: {k: _param_json(v) for k, v in ps.items()} for f, ps in self.family_space.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        """A TOML-shaped dict that ``spec_from_dict`` reads back into an equal spec."""
        space: dict[str, Any] = {k: _param_json(v) for k, v in self.space.items()}
        for family, params in self.family_space.items():
            space[family] = {k: _param_json(v) for k, v in params.items()}
        study: dict[str, Any] = {"name": self.name, "objectives": list(self.objectives), "trials": self.trials,
                                 "sampler": self.sampler, "pruner": self.pruner, "fidelity": self.fidelity,
                                 "seed": self.seed, "baselines": self.baselines, "start": self.start,
                                 "early_stopping": self.early_stopping,
                                 "save_models": self.save_models}
        if self.warm_start:
            study.update(warm_start=self.warm_start, warm_start_top=self.warm_start_top)
        for key in ("timeout", "max_params", "workers"):
            if getattr(self, key) is not None:
                study[key] = getattr(self, key)
        for key in ("sampler_options", "pruner_options"):
            if getattr(self, key):
                study[key] = dict(getattr(self, key))
        data: dict[str, Any] = {"source": self.data.source, "validation_split": self.data.validation_split,
                                "seed": self.data.seed, "center": self.data.center}
        if self.data.limit is not None:
            data["limit"] = self.data.limit
        return {"study": study, "data": data, "space": space}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _param_json(value: Param) -> Any:
    return value.to_json() if isinstance(value, (Range, Choice)) else value


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate the study file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such study file; pass the path of a .toml file such as studies/quickstart.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a UTF-8 text file: {exc}") from exc
    return spec_from_dict(data, source=str(path))


def spec_from_dict(data: dict[str, Any], *, source: str = "<study>") -> StudySpec:
    """Validate a TOML-shaped dict (as ``StudySpec.to_dict`` writes it) into a ``StudySpec``."""
    unknown_keys(source, "", data, {"study", "data", "space"})
    study = table(source, "study", data.get("study", {}))
    unknown_keys(source, "study", study, _STUDY_KEYS)
    data_table = table(source, "data", data.get("data", {}))
    unknown_keys(source, "data", data_table, _DATA_KEYS)
    space_table = table(source, "space", data.get("space", {}))
    name, fields, data_spec = _name(source, study), _study_fields(source, study), _data_spec(source, data_table)
    space, family_space = _spaces(source, space_table)
    return StudySpec(name=name, **fields, data=data_spec, space=space, family_space=family_space, path=source)


def _name(source: str, study: dict[str, Any]) -> str:
    name = study.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"{source}: [study] name is required and must be a non-empty string, got {name!r}")
    if len(name.strip()) > MAX_NAME_LENGTH:
        raise SpecError(f"{source}: [study] name is {len(name.strip())} characters long; the storage keeps names "
                        f"of at most {MAX_NAME_LENGTH}: give a shorter one")
    if any(not ch.isprintable() for ch in name):  # NUL, newlines, terminal escapes: shown raw to every viewer
        raise SpecError(f"{source}: [study] name {name!r} holds a control character; use printable characters only")
    return name.strip()


def _study_fields(source: str, study: dict[str, Any]) -> dict[str, Any]:
    """``[study]``'s keys but the name, validated in the order the file's reader reports them, as fields."""
    fields: dict[str, Any] = {"objectives": _objectives(source, study)}
    fields["sampler"] = choice_value(source, "study.sampler", study.get("sampler", "tpe"), SAMPLERS)
    fields["pruner"] = choice_value(source, "study.pruner", study.get("pruner", "hyperband"), PRUNERS)
    fields["sampler_options"] = table(source, "study.sampler_options", study.get("sampler_options", {}))
    if fields["sampler"] == "grid" and "points" in fields["sampler_options"]:  # 0 would leave no grid to run
        int_value(source, "study.sampler_options.points", fields["sampler_options"]["points"], minimum=1)
    fields["pruner_options"] = table(source, "study.pruner_options", study.get("pruner_options", {}))
    fields["fidelity"] = choice_value(source, "study.fidelity", study.get("fidelity", StudySpec.fidelity), FIDELITIES)
    fields["baselines"] = choice_value(source, "study.baselines", study.get("baselines", "none"), BASELINES)
    fields["start"] = choice_value(source, "study.start", study.get("start", "defaults"), STARTS)
    fields["early_stopping"] = int_value(source, "study.early_stopping", study.get("early_stopping", 0), minimum=0)
    fields["save_models"] = int_value(source, "study.save_models", study.get("save_models", 3), minimum=0)
    warm_start = study.get("warm_start")
    if warm_start is not None and (not isinstance(warm_start, str) or not warm_start.strip()):
        raise SpecError(f"{source}: study.warm_start must be the name of an earlier study, got {warm_start!r}")
    fields["warm_start"] = warm_start.strip() if warm_start else None
    fields["warm_start_top"] = int_value(source, "study.warm_start_top", study.get("warm_start_top", 3), minimum=1)
    for key in ("max_params", "workers"):
        fields[key] = None if study.get(key) is None else int_value(source, f"study.{key}", study[key], minimum=1)
    fields["trials"] = int_value(source, "study.trials", study.get("trials", 20), minimum=1)
    fields["seed"] = int_value(source, "study.seed", study.get("seed", 128), minimum=0, maximum=MAX_SEED)
    timeout = study.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise SpecError(f"{source}: study.timeout must be a positive number of seconds, got {timeout!r}")
    fields["timeout"] = timeout
    return fields


def _data_spec(source: str, data_table: dict[str, Any]) -> DataSpec:
    split = data_table.get("validation_split", 0.3)
    if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0 < split < 1:
        raise SpecError(f"{source}: data.validation_split must be a number between 0 and 1 (exclusive), got {split!r}")
    source_value = data_table.get("source", "digits")
    if not isinstance(source_value, str) or not source_value:
        raise SpecError(f"{source}: data.source must be a dataset name or path, got {source_value!r}")
    center = data_table.get("center", False)
    if not isinstance(center, bool):
        raise SpecError(f"{source}: data.center must be true or false, got {center!r}")
    limit = data_table.get("limit")
    if limit is not None:
        limit = int_value(source, "data.limit", limit, minimum=20)
    return DataSpec(source=source_value, validation_split=float(split),
                    seed=int_value(source, "data.seed", data_table.get("seed", 128), minimum=0, maximum=MAX_SEED),
                    center=center, limit=limit)


def _spaces(source: str, space_table: dict[str, Any]) -> tuple[dict[str, Param], dict[str, dict[str, Param]]]:
    """``[space]`` and each searched family's ``[space.<family>]``, every knob as a parameter."""
    family_tables = {f: table(source, f"space.{f}", space_table.get(f, {})) for f in FAMILIES}
    common_raw = {k: v for k, v in space_table.items() if k not in FAMILIES}
    space = params_of(source, "space", common_raw, common_knobs(), hint="or the tables [space.mlp] and [space.cnn]")
    families = space["family"].choices if isinstance(space["family"], Choice) else (space["family"],)
    family_space = {}
    for family in FAMILIES:
        params = params_of(source, f"space.{family}", family_tables[family], family_knobs(family))
        if family in families:
            family_space[family] = params
    return space, family_space


def _objectives(source: str, study: dict[str, Any]) -> tuple[str, ...]:
    """``objectives = ["val_accuracy:max", "params:min"]``, or the shorthand ``metric = "val_loss"``."""
    if "metric" in study and "objectives" in study:
        raise SpecError(f"{source}: give either study.metric or study.objectives, not both")
    raw = study.get("objectives", [study.get("metric", "val_accuracy")])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{source}: study.objectives must be a non-empty list such as "
                        f'["val_accuracy:max", "params:min"], got {raw!r}')
    objectives = []
    for item in raw:
        name, _, direction = str(item).partition(":")
        if name not in METRICS:
            raise SpecError(f"{source}: study.objectives: unknown metric {name!r}; expected one of "
                            f"{', '.join(METRICS)}")
        direction = direction or METRICS[name]
        if direction not in ("max", "min"):
            raise SpecError(f"{source}: study.objectives: {item!r} must end in :max or :min")
        objectives.append(f"{name}:{direction}")
    if len(set(o.split(':')[0] for o in objectives)) != len(objectives):
        raise SpecError(f"{source}: study.objectives names a metric twice: {raw!r}")
    return tuple(objectives)
