"""Trained models of a study's best trials, kept as ``.keras`` files in Optuna's artifact store.

The store is a folder: beside the database for SQLite (``studies/digitune.db`` keeps its
models in ``studies/digitune-artifacts/``), or one the user names with ``--artifacts`` or
``$DIGITUNE_ARTIFACTS`` (needed for a shared PostgreSQL study, where the folder should be
shared too). Each saved model is uploaded while its trial runs, so Optuna (and
optuna-dashboard) list it among the trial's artifacts; the study's user attribute
``saved_models`` maps trial numbers to the artifact ids still kept, at most ``keep``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

ARTIFACTS_ENV = "DIGITUNE_ARTIFACTS"
SAVED_ATTR = "saved_models"
MODEL_ATTR = "model_artifact"


def artifact_dir(storage_url: str, override: str | os.PathLike | None = None) -> Path:
    """The artifact folder by precedence: ``override``, ``$DIGITUNE_ARTIFACTS``, beside a SQLite file, studies/artifacts."""
    chosen = override or os.environ.get(ARTIFACTS_ENV)
    if chosen:
        return Path(chosen).expanduser()
    try:
        url = make_url(storage_url)
    except Exception:
        url = None
    if url is not None and url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database).expanduser()
        return database.parent / f"{database.stem}-artifacts"
    return Path("studies") / "artifacts"


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether ``trial`` meets all its constraints (``trial.set_constraint`` values <= 0), as Optuna judges it."""
    return all(v <= 0 for v in (trial.constraints or {}).values())


class ModelKeeper:
    """Keeps the models of the ``keep`` best feasible trials (by the first objective)."""

    def __init__(self, folder: str | os.PathLike, keep: int):
        self.folder = Path(folder)
        self.keep = keep
        self._store: FileSystemArtifactStore | None = None

    @property
    def store(self) -> FileSystemArtifactStore:
        if self._store is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._store = FileSystemArtifactStore(str(self.folder))
        return self._store

    def offer(self, trial: optuna.Trial, model: Any, value: float, feasible: bool = True) -> str | None:
        """Save ``model`` if ``value`` ranks among the ``keep`` best; returns the artifact id, or None."""
        if self.keep <= 0 or not feasible:
            return None
        study = trial.study
        maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        better = [
            t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and is_feasible(t) and (t.values[0] > value if maximize else t.values[0] < value)
        ]
        if len(better) >= self.keep:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"trial-{trial.number}.keras"
            model.save(path)
            artifact_id = upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=trial)
        trial.set_user_attr(MODEL_ATTR, artifact_id)
        self._evict(study, trial.number, artifact_id, value, maximize)
        return artifact_id

    def _evict(self, study: optuna.Study, number: int, artifact_id: str, value: float, maximize: bool) -> None:
        saved = {int(k): v for k, v in study.user_attrs.get(SAVED_ATTR, {}).items()}
        saved[number] = artifact_id
        values = {t.number: t.values[0] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.values}
        values[number] = value
        ranked = sorted(saved, key=lambda n: values.get(n, float("-inf") if maximize else float("inf")),
                        reverse=maximize)
        for dropped in ranked[self.keep:]:
            try:
                self.store.remove(saved.pop(dropped))
            except Exception:  # already gone (another worker removed it): nothing to keep
                pass
        study.set_user_attr(SAVED_ATTR, {str(k): v for k, v in sorted(saved.items())})

    def fetch(self, study: optuna.Study, number: int, destination: str | os.PathLike) -> bool:
        """Copy the saved model of trial ``number`` to ``destination``; False if it was not kept."""
        artifact_id = study.user_attrs.get(SAVED_ATTR, {}).get(str(number))
        if artifact_id is None or not self.folder.exists():
            return False
        try:
            download_artifact(artifact_store=self.store, file_path=str(destination), artifact_id=artifact_id)
        except Exception:
            return False
        return True
