"""The one place that creates, resumes or submits a study, and checks it against its file and data."""

from __future__ import annotations

import optuna

from digitune.models import Dataset

from .._claim import study_lock
from .._factories import make_pruner, make_sampler
from .._manifest import manifest
from ..storage._reconnect import keep_reconnecting
from .._schema import DATASET_ATTR, MANIFEST_ATTR, SPEC_ATTR, data_changed, stored_dataset
from .._space import check_space_fits
from .._spec import SpecError, StudySpec
from ._first_trials import enqueue_first_trials, warm_start_params
from ._load import deleted_as_error, load_study, stored_spec


def open_study(spec: StudySpec, storage: optuna.storages.BaseStorage, dataset: Dataset, *,
               seed_offset: int = 0) -> optuna.Study:
    """Create the study for ``spec``, or resume it if it exists and was made from the same definition.

    ``seed_offset`` goes into the sampler's seed of a resumed study (a worker passes its
    process id, so that workers joining at once do not draw the same parameters).
    """
    keep_reconnecting(storage)  # a long-running process: a database that blinks is waited for
    check_space_fits(spec, dataset.info.image_shape)
    pruner = make_pruner(spec, len(dataset.x_train))
    warm = warm_start_params(spec, storage, dataset.info.image_shape) \
        if spec.warm_start and _unstarted(spec.name, storage) else []  # a study read only where it matters
    with study_lock(storage, spec.name):  # processes opening a new study at once: one creates it, whole
        study, created = _load_or_create(spec, storage, dataset, pruner, warm)
    with deleted_as_error(study):  # `digitune delete` may come in as soon as the lock is free
        if created:
            study.set_user_attr(MANIFEST_ATTR, manifest(dataset))
        else:
            _open_stored(study, spec, storage, dataset, seed_offset=seed_offset, warm=warm)
    return study


def _unstarted(name: str, storage: optuna.storages.BaseStorage) -> bool:
    """Whether the study ``name`` will get its first trials now: it is new, or submitted and not yet run."""
    try:
        return not optuna.load_study(study_name=name, storage=storage).user_attrs.get(DATASET_ATTR)
    except KeyError:
        return True


def _open_stored(study: optuna.Study, spec: StudySpec, storage: optuna.storages.BaseStorage, dataset: Dataset, *,
                 seed_offset: int, warm: list) -> None:
    """Check a stored study against ``spec`` and ``dataset``, and record the data if it was submitted."""
    study.sampler = make_sampler(spec, stream=(len(study.get_trials(deepcopy=False)), seed_offset))
    _check_definition(study, spec)
    attrs = study.user_attrs  # one read: each is a query to the storage
    changed = data_changed(attrs, dataset.info.fingerprint, study=spec.name, source=dataset.info.source,
                           context="resume")
    if changed:
        raise SpecError(changed)
    new = False
    if not stored_dataset(attrs).get("fingerprint"):  # a submitted study: the first agent to run it records its data
        with study_lock(storage, spec.name):
            if not study.user_attrs.get(DATASET_ATTR):
                study.set_user_attr(DATASET_ATTR, dataset.info.to_dict())
                study.set_user_attr(MANIFEST_ATTR, manifest(dataset))
                new = True  # this agent queues the first trials
    enqueue_first_trials(study, spec, dataset.info.image_shape, new=new, warm=warm)


def _load_or_create(spec: StudySpec, storage: optuna.storages.BaseStorage, dataset: Dataset,
                    pruner: optuna.pruners.BasePruner, warm: list) -> tuple[optuna.Study, bool]:
    """The stored study, or a new one with its spec, data and first trials; and whether it is new."""
    try:
        return optuna.load_study(study_name=spec.name, storage=storage, sampler=make_sampler(spec), pruner=pruner), False
    except KeyError:
        pass
    study = optuna.create_study(storage=storage, study_name=spec.name, sampler=make_sampler(spec),
                                pruner=pruner, directions=list(spec.directions), load_if_exists=True)
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    study.set_user_attr(DATASET_ATTR, dataset.info.to_dict())
    enqueue_first_trials(study, spec, dataset.info.image_shape, new=True, warm=warm)
    return study, True


def _check_definition(study: optuna.Study, spec: StudySpec) -> None:
    old = stored_spec(study)
    if old.search_definition() != spec.search_definition():
        differing = sorted(k for k, v in spec.search_definition().items() if old.search_definition()[k] != v)
        raise SpecError(
            f"{spec.path or 'the study file'} disagrees with the stored study {spec.name!r} on "
            f"{', '.join(differing)}; give the study a new [study] name, or delete the old study first")


def open_submitted(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The study for a submitted ``spec``, created without loading its data (agents load it).

    An existing study must have the same search definition; its stored spec is replaced by
    ``spec`` (a new budget, say). The sampler and pruner are built once to check their options.
    """
    make_sampler(spec), make_pruner(spec)
    if spec.warm_start:
        load_study(spec.warm_start, storage)  # a mistyped name is refused before anything is stored
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        study = optuna.create_study(storage=storage, study_name=spec.name, directions=list(spec.directions),
                                    load_if_exists=True)
    else:
        _check_definition(study, spec)
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    return study
