"""A study file's spec with a command's options in place of some of its keys (``--dataset``, ``--sampler``...)."""

from __future__ import annotations

from typing import Any

from ._spec import StudySpec, spec_from_dict


def with_overrides(spec: StudySpec, *, source: str, dataset: str | None = None, **study: Any) -> StudySpec:
    """``spec`` with the given ``[study]`` keys and the data source replaced; unset (falsy) ones keep the file's.

    Validated as the file is: a bad value raises ``SpecError`` naming ``source`` and the key.
    """
    study = {key: value for key, value in study.items() if value}
    if not study and not dataset:
        return spec
    data = spec.to_dict()
    data["study"].update(study)
    if dataset:
        data["data"]["source"] = dataset
    return spec_from_dict(data, source=f"{source} (with command-line options)")
