"""Trained models of a study's best trials, kept as ``.keras`` files in Optuna's artifact store.

Why it is built this way: docs/internals.md, "search/_artifacts.py".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta, upload_artifact
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from digitune.models import atomic_open, is_temporary

from ._env import ARTIFACTS_ENV
from ._optuna_private import backend_of
from ._ranking import counted, is_feasible, rank
from ._schema import MODEL_ATTR, SAVED_ATTR
from .storage._writes import write_trial_attrs

OWNERS_FILE = ".digitune-storages"
UNKNOWN_OWNER = "(a storage digitune cannot name)"
STALE_SECONDS = 3600  # a temporary file this old belongs to no write still running


class ArtifactError(OSError):
    """A model could not be saved in the artifact store (a full disk, say); its trial fails with this."""


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
        database = Path(os.path.realpath(Path(url.database).expanduser()))  # one folder for a file under two paths
        return database.parent / f"{database.stem}-artifacts"
    return Path("studies") / "artifacts"


def storage_label(storage: optuna.storages.BaseStorage) -> str:
    """The storage as its owners file names it: the URL without its password (a SQLite file's absolute path)."""
    backend = backend_of(storage)
    url = getattr(backend, "url", None)
    if not isinstance(url, str):
        return UNKNOWN_OWNER
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return f"sqlite:///{Path(parsed.database).expanduser().resolve()}"
    return parsed.render_as_string(hide_password=True)


class AtomicFileStore(FileSystemArtifactStore):
    """Optuna's file-system artifact store, writing each artifact through a temporary file beside it."""

    def __init__(self, folder: str | os.PathLike):
        super().__init__(str(folder))
        self.folder = Path(folder)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        if Path(artifact_id).name != artifact_id or artifact_id in ("", ".", ".."):
            raise ValueError(f"Invalid artifact_id: {artifact_id}")
        with atomic_open(self.folder / artifact_id, "wb") as handle:
            shutil.copyfileobj(content_body, handle)

    def claim(self, storage: optuna.storages.BaseStorage) -> None:
        """Add ``storage`` to the folder's owners file (appended: concurrent workers lose no line)."""
        label = storage_label(storage)
        if label not in self.owners():
            with (self.folder / OWNERS_FILE).open("a", encoding="utf-8") as handle:
                handle.write(label + "\n")

    def owners(self) -> set[str]:
        """The storages that saved models here (empty for a folder of an older digitune)."""
        try:
            return {line for line in (self.folder / OWNERS_FILE).read_text(encoding="utf-8").splitlines() if line}
        except FileNotFoundError:
            return set()


class ModelKeeper:
    """Keeps the models of the ``keep`` best feasible trials (by the first objective)."""

    def __init__(self, folder: str | os.PathLike, keep: int):
        self.folder = Path(folder)
        self.keep = keep
        self._store: AtomicFileStore | None = None
        self._claimed = False

    @property
    def store(self) -> AtomicFileStore:
        if self._store is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._store = AtomicFileStore(self.folder)
        return self._store

    def offer(self, trial: optuna.Trial, model: Any, value: float, feasible: bool = True) -> str | None:
        """Save ``model`` if ``value`` ranks among the ``keep`` best; returns the artifact id, or None.

        Saved as ``models.save_model`` writes it (plain Keras loads it); ``ArtifactError`` if it
        cannot be written, with nothing partial left in the store.
        """
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
        artifact_id = self._upload(trial, model)
        write_trial_attrs(trial, {MODEL_ATTR: artifact_id})
        self._evict(study, trial.number, artifact_id, value, maximize)
        return artifact_id

    def _upload(self, trial: optuna.Trial, model: Any) -> str:
        from digitune.models import save_model

        try:
            if not self._claimed:
                self.store.claim(trial.storage)
                self._claimed = True
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"trial-{trial.number}.keras"
                save_model(model, path)
                return upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=trial)
        except OSError as exc:
            error = ArtifactError(f"cannot save the model of trial {trial.number} in the artifact store "
                                  f"{self.folder}: {exc.strerror or exc}")
            error.errno = exc.errno
            raise error from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer of the study's saved-models record at a time among the workers sharing this folder.

        A folder that cannot lock (a read-only owners file, a mount without ``flock``) goes on
        unlocked: the heal in ``_evict`` covers what a lost write drops.
        """
        try:
            fd = os.open(self.folder / OWNERS_FILE, os.O_RDONLY | os.O_CREAT, 0o666)
        except OSError:
            fd = None
        try:
            if fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fd is not None:
                os.close(fd)  # the lock goes with it

    def _evict(self, study: optuna.Study, number: int, artifact_id: str, value: float, maximize: bool) -> None:
        with self._locked():
            trials = study.get_trials(deepcopy=False)
            complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
            saved = {int(k): v for k, v in study.user_attrs.get(SAVED_ATTR, {}).items()}
            # a kept model the record lost (a writer on another machine, or before this lock) comes back
            saved.update({t.number: t.user_attrs[MODEL_ATTR] for t in counted(complete)
                          if t.number not in saved and isinstance(t.user_attrs.get(MODEL_ATTR), str)
                          and (self.folder / t.user_attrs[MODEL_ATTR]).is_file()})
            saved[number] = artifact_id
            values = {t.number: t.values[0] for t in complete}
            values[number] = value
            # another worker's trial saved but not yet told has no value to rank by: it stays for now
            waiting = {t.number for t in trials
                       if t.number in saved and t.number != number and not t.state.is_finished()}
            worst = float("-inf") if maximize else float("inf")
            ranked = rank(sorted(n for n in saved if n not in waiting), study.directions[0],
                          key=lambda n: values.get(n, worst))  # of equals, the earlier trial stays
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


def remove_orphans(folder: str | os.PathLike, storage: optuna.storages.BaseStorage) -> int:
    """Remove from ``folder`` what no study in ``storage`` refers to; returns how many files went.

    Temporary files that killed writes left (an hour old or more) always go. Artifacts that no
    trial or study of ``storage`` lists go only when the owners file names ``storage`` alone: a
    folder other storages (or a storage proxy, which has no name here) save to too, or one an
    older digitune wrote, keeps them.
    """
    store = AtomicFileStore(folder)
    files = [p for p in store.folder.iterdir() if p.is_file() and p.name != OWNERS_FILE]
    now = time.time()
    doomed = [p for p in files if is_temporary(p) and now - p.stat().st_mtime >= STALE_SECONDS]
    label = storage_label(storage)
    if label != UNKNOWN_OWNER and store.owners() == {label}:
        referenced = set()
        for summary in storage.get_all_studies():
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            for holder in [study, *study.get_trials(deepcopy=False)]:
                referenced.update(m.artifact_id for m in get_all_artifact_meta(holder, storage=storage))
        doomed += [p for p in files if not is_temporary(p) and not p.name.startswith(".") and p.name not in referenced]
    for path in doomed:
        path.unlink(missing_ok=True)
    return len(doomed)
