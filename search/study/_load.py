"""An existing study: loading it by name, its stored spec, its finished trials, a deletion noticed."""

from __future__ import annotations

import contextlib
from typing import Iterator

import optuna
from optuna.trial import TrialState

from .._optuna_private import storage_of
from .._schema import SPEC_ATTR, stored_record
from .._spec import SpecError, StudySpec, spec_from_dict

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class StudyNotFoundError(LookupError):
    """No study of that name in the storage."""


class StudyDeletedError(StudyNotFoundError):
    """The study was deleted (``digitune delete``) while this process worked on it."""

    def __init__(self, name: str):
        super().__init__(f"study {name!r} was deleted while this process worked on it; nothing left to run")


def is_gone(study: optuna.Study) -> bool:
    """Whether the study was deleted from its storage."""
    try:
        storage_of(study).get_study_id_from_name(study.study_name)
    except KeyError:
        return True
    return False


@contextlib.contextmanager
def deleted_as_error(study: optuna.Study) -> Iterator[None]:
    """A ``KeyError`` from a study deleted under this block becomes ``StudyDeletedError``."""
    try:
        yield
    except KeyError:
        if is_gone(study):
            raise StudyDeletedError(study.study_name) from None
        raise


def stored_spec(study: optuna.Study) -> StudySpec:
    """The spec a study was created with, as digitune stored it on the study."""
    data = stored_record(study.user_attrs, SPEC_ATTR)
    if not data:
        raise SpecError(f"study {study.study_name!r} was not created by digitune (it has no stored spec)")
    return spec_from_dict(data, source=f"study {study.study_name!r}")


def load_study(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """An existing study, or ``StudyNotFoundError`` listing the names there are."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError as exc:
        names = optuna.get_all_study_names(storage=storage)
        known = ", ".join(sorted(names)) if names else "none yet"
        raise StudyNotFoundError(
            f"no study named {name!r} in this storage (studies: {known}); check the name or --storage") from exc


def count_finished(study: optuna.Study) -> int:
    with deleted_as_error(study):
        return len(study.get_trials(deepcopy=False, states=FINISHED))
