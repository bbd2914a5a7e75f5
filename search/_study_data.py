"""A stored study together with the data it was run on, for commands that use its models."""

from __future__ import annotations

import optuna

from digitune.models import Dataset, load_dataset

from .study import load_study, stored_spec
from ._schema import stored_dataset
from ._spec import SpecError, StudySpec


def study_with_data(name: str, storage: optuna.storages.BaseStorage) -> tuple[optuna.Study, StudySpec, Dataset]:
    """The study, its stored spec and its data, loaded again; ``SpecError`` if the data changed since."""
    study = load_study(name, storage)
    spec = stored_spec(study)
    data = load_dataset(spec.data.source, **spec.data.load_kwargs())
    recorded = stored_dataset(study.user_attrs).get("fingerprint")
    if recorded and recorded != data.info.fingerprint:
        raise SpecError(f"study {name!r} was run on data with fingerprint {recorded}, but {data.info.source} now "
                        f"has {data.info.fingerprint}; restore the study's data to export or predict")
    return study, spec, data
