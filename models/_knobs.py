"""Config fields that declare themselves: kind, allowed values, and where a search starts them.

Every field of a model or training config is declared once, with ``knob(...)``. Its
metadata validates the config (``validate``) and tells the search side everything it needs:
the kind and bounds a study file's value must have, what a study file that leaves the key
out searches (``space``), and the known-good value a study's first trial starts from
(``start``). ``search`` derives its spec, space, defaults and grid from these, so a new
hyperparameter is one field here plus the line that uses it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

KINDS = ("int", "float", "str", "bool")


class ConfigError(ValueError):
    """A model or training config that cannot be built; the message says how to fix it."""


class _Highest:
    """The start value that means "the high end of whatever the study searches" (epochs)."""

    def __repr__(self) -> str:
        return "HIGHEST"


HIGHEST: Any = _Highest()
_UNSET: Any = object()


@dataclass(frozen=True)
class Knob:
    """What a config field accepts and how a search treats it.

    ``low``/``high`` bound numbers (inclusive unless ``low_open``/``high_open``);
    ``choices`` lists a string knob's values. ``space`` is what a study file that omits the
    key means (the field's default unless given); ``start`` is the known-good value of a
    study's first trial (``space`` unless given). ``searchable`` is False for fields a study
    file cannot name (the seed, say).
    """

    kind: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    space: Any = _UNSET
    start: Any = _UNSET
    searchable: bool = True
    help: str = ""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit, as "expected ..." text; None when it fits."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else "expected true or false"
        if self.kind == "str":
            return None if value in (self.choices or ()) else f"expected one of {', '.join(self.choices or ())}"
        is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if (self.kind == "int" and not is_int) or not is_number or not self._in_bounds(value):
            return f"expected {self.describe()}"
        return None

    def _in_bounds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """The values allowed, in words: "an integer >= 1", "a number in [0, 1)"."""
        if self.kind in ("str", "bool"):
            return "true or false" if self.kind == "bool" else f"one of {', '.join(self.choices or ())}"
        noun = "an integer" if self.kind == "int" else "a number"
        if self.high is None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}" if self.low is not None else noun
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{noun} in {left}{self.low:g}, {self.high:g}{right}"


def knob(default: Any, kind: str, *, choices: tuple[Any, ...] | None = None, **options: Any) -> Any:
    """A dataclass field holding ``default``, declared as a ``Knob`` of ``kind`` (see ``Knob``)."""
    if kind not in KINDS:
        raise ValueError(f"knob kind must be one of {', '.join(KINDS)}, got {kind!r}")
    spec = Knob(kind, choices=choices, **options)
    spec = dataclasses.replace(spec, space=default if spec.space is _UNSET else spec.space)
    spec = dataclasses.replace(spec, start=spec.space if spec.start is _UNSET else spec.start)
    return dataclasses.field(default=default, metadata={"knob": spec})


def knobs_of(cls: type, *, searchable_only: bool = True) -> dict[str, Knob]:
    """The config class's fields declared with ``knob``, in declaration order."""
    found = {f.name: f.metadata["knob"] for f in dataclasses.fields(cls) if "knob" in f.metadata}
    return {name: k for name, k in found.items() if k.searchable or not searchable_only}


def validate(config: Any) -> None:
    """Check every knob field of ``config``; ``ConfigError`` names the field, what it expects and what it got."""
    owner = type(config).__name__
    for name, spec in knobs_of(type(config), searchable_only=False).items():
        value = getattr(config, name)
        problem = spec.problem(value)
        if problem is not None:
            raise ConfigError(f"{owner}: invalid value for {name}, {problem}. Received: {name}={value!r}")
