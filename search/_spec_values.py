"""The values of a study file: ranges, choices, and the checks that name the file and key of a bad one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

from digitune.models import Knob


class SpecError(ValueError):
    """A study definition that cannot run; the message names the file and the key."""


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high)) and (
            self.step is None or isinstance(self.step, int))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            data["log"] = True
        if self.step is not None:
            data["step"] = self.step
        return data


@dataclass(frozen=True)
class Choice:
    choices: tuple[Any, ...]

    def to_json(self) -> list[Any]:
        return list(self.choices)


Param = Union[Range, Choice, int, float, str, bool]


def table(source: str, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{source}: [{key}] must be a table, got {type(value).__name__} {value!r}")
    return value


def unknown_keys(source: str, where: str, table: dict[str, Any], known: set[str], extra_hint: str = "") -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        place = f"[{where}] " if where else ""
        hint = f" {extra_hint}" if extra_hint else ""
        raise SpecError(f"{source}: unknown key {place}{unknown[0]!r}; expected one of {', '.join(sorted(known))}{hint}")


def choice_value(source: str, key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SpecError(f"{source}: {key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def int_value(source: str, key: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= (maximum or value):
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise SpecError(f"{source}: {key} must be an integer {bound}, got {value!r}")
    return value


def params_of(source: str, where: str, table: dict[str, Any], knobs: dict[str, Knob], hint: str = "") -> dict[str, Param]:
    """Every knob's parameter from ``table`` (the knob's ``space`` value where the key is left out)."""
    unknown_keys(source, where, table, set(knobs), extra_hint=hint)
    return {name: param_of(source, f"{where}.{name}", table.get(name, knob.space), knob) for name, knob in knobs.items()}


def check_scalar(source: str, key: str, value: Any, knob: Knob) -> None:
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
    }[knob.kind]
    if not ok:
        what = "an integer" if knob.kind == "int" else "a " + knob.kind
        raise SpecError(f"{source}: {key} expects {what} value, got {value!r}")
    if knob.problem(value) is not None:
        raise SpecError(f"{source}: {key} must be {knob.describe()}, got {value!r}")


def param_of(source: str, key: str, value: Any, knob: Knob) -> Param:
    kind = knob.kind
    if isinstance(value, Choice | Range):
        return value
    if isinstance(value, list):
        if not value:
            raise SpecError(f"{source}: {key} is an empty list of choices; give at least one value")
        for v in value:
            check_scalar(source, key, v, knob)
        if len(set(map(repr, value))) != len(value):
            raise SpecError(f"{source}: {key} lists a choice twice: {value!r}")
        return Choice(tuple(value))
    if isinstance(value, dict):
        if kind in ("str", "bool"):
            raise SpecError(f"{source}: {key} takes a value or a list of choices, not a range: {value!r}")
        unknown_keys(source, key, value, {"low", "high", "log", "step"})
        if "low" not in value or "high" not in value:
            raise SpecError(f"{source}: {key} range needs both low and high, got {value!r}")
        low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
        check_scalar(source, key, low, knob)
        check_scalar(source, key, high, knob)
        if low > high:
            raise SpecError(f"{source}: {key}: `low <= high` must hold, but got (low={low}, high={high})")
        if not isinstance(log, bool):
            raise SpecError(f"{source}: {key}: log must be true or false, got {log!r}")
        if log and low <= 0:
            raise SpecError(f"{source}: {key}: a log range needs low > 0, got low={low}")
        if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
            raise SpecError(f"{source}: {key}: step must be a positive number, got {step!r}")
        if step is not None and log:
            raise SpecError(f"{source}: {key}: step and log cannot be used together")
        if kind == "int" and not all(isinstance(v, int) for v in (low, high, 1 if step is None else step)):
            raise SpecError(f"{source}: {key} expects integer ends and step, got (low={low!r}, high={high!r}"
                            f"{'' if step is None else f', step={step!r}'})")
        if kind == "float":
            low, high = float(low), float(high)
        return Range(low=low, high=high, log=log, step=step)
    check_scalar(source, key, value, knob)
    return value
