"""digitune's Python API for a notebook or a script: the CLI's main commands as functions.

    import digitune
    summary = digitune.run("studies/quickstart.toml", trials=6)
    frame = digitune.trials_frame("quickstart")
    digitune.export_model("quickstart", "best.keras")

``storage`` is a database URL as ``--storage`` takes it (default ``$DIGITUNE_STORAGE``, else
``sqlite:///studies/digitune.db``). Functions that only read never create or change a database.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna

from digitune.models import DataError, Dataset, load_dataset
from digitune.search import (
    ExportResult,
    ModelKeeper,
    RunSummary,
    SpecError,
    StorageError,
    StudyNotFoundError,
    StudySpec,
    artifact_dir,
    export_data,
    load_spec,
    open_storage,
    read_storage,
    resolve_storage_url,
    run_study,
    spec_from_dict,
)
from digitune.search import export_model as _export_model
from digitune.search import load_study as _load_study
from digitune.search._deadline import deadline_after
from digitune.search._overrides import with_overrides
from digitune.search._study_data import study_with_data

__all__ = ["DataError", "Dataset", "ExportResult", "RunSummary", "SpecError", "StorageError", "StudyNotFoundError", "StudySpec",
           "export_model", "load_dataset", "load_spec", "load_study", "open_storage", "run", "spec_from_dict",
           "trials", "trials_frame"]


def _spec(study: str | os.PathLike | StudySpec | dict) -> StudySpec:
    if isinstance(study, StudySpec):
        return study
    if isinstance(study, dict):
        return spec_from_dict(study, source="the study given to digitune.run")
    if isinstance(study, (str, os.PathLike)):
        return load_spec(Path(study))
    raise SpecError(f"digitune.run takes a study file's path, a StudySpec or a dict of its tables; got "
                    f"{type(study).__name__}")


def run(study: str | os.PathLike | StudySpec | dict, *, storage: str | None = None, trials: int | None = None,
        timeout: float | None = None, dataset: str | None = None, artifacts: str | None = None) -> RunSummary:
    """Run (or continue) a study in this process until it holds ``trials`` finished trials, as ``digitune run``.

    ``study`` is a study file's path, a ``StudySpec`` or a dict of its tables; ``timeout`` stops
    running trials at their next epoch end. One worker: for several, use the CLI.
    """
    source = str(study) if isinstance(study, (str, os.PathLike)) else "the study given to digitune.run"
    spec = with_overrides(_spec(study), source=source, dataset=dataset)
    url = resolve_storage_url(storage)
    return run_study(spec, open_storage(url), n_trials=trials or spec.trials,
                     deadline=deadline_after(timeout or spec.timeout),
                     keeper=ModelKeeper(artifact_dir(url, artifacts), spec.save_models))


def load_study(name: str, *, storage: str | None = None) -> optuna.Study:
    """The stored study ``name`` as an Optuna study (read-only use: this never creates a database)."""
    return _load_study(name, read_storage(storage))


def trials(name: str, *, storage: str | None = None) -> list[dict[str, Any]]:
    """Every trial of study ``name`` (all states, by number) as the records ``digitune export`` writes."""
    data = export_data(name, read_storage(storage))
    return data["trials"]


def trials_frame(name: str, *, storage: str | None = None):
    """The trials of study ``name`` as a pandas DataFrame, one row per trial, indexed by trial number."""
    import pandas

    return pandas.DataFrame.from_records(trials(name, storage=storage)).set_index("number")


def export_model(name: str, destination: str | os.PathLike, *, storage: str | None = None,
                 artifacts: str | None = None, ensemble: int | None = None, retrain: bool = False) -> ExportResult:
    """Write study ``name``'s final model to ``destination`` (.keras) and record its test accuracy, as
    ``digitune export-model``: the best trial's saved model, an ``ensemble`` of the K best, or ``retrain``."""
    url = resolve_storage_url(storage)
    study, spec, data = study_with_data(name, open_storage(url))
    keeper = ModelKeeper(artifact_dir(url, artifacts), spec.save_models)
    return _export_model(study, data, destination, keeper, ensemble=ensemble, retrain=retrain)
