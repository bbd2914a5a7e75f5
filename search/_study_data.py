"""A stored study together with the data it was run on, for commands that use its models."""

from __future__ import annotations

import optuna

from digitune.models import Dataset, load_dataset

from .study import load_study, stored_spec
from ._schema import data_changed
from ._spec import SpecError, StudySpec


def study_with_data(name: str, storage: optuna.storages.BaseStorage) -> tuple[optuna.Study, StudySpec, Dataset]:
    """The study, its stored spec and its data, loaded again; ``SpecError`` if the data changed since."""
    study = load_study(name, storage)
    spec = stored_spec(study)
    data = load_dataset(spec.data.source, **spec.data.load_kwargs())
    changed = data_changed(study.user_attrs, data.info.fingerprint, study=name, source=data.info.source,
                           context="export")
    if changed:
        raise SpecError(changed)
    return study, spec, data
