"""Looking after a storage: export a study's trials, delete a study, check the installation.

Plain records and plain functions; the ``export``, ``delete`` and ``doctor`` commands
(``cli/_admin.py``) only parse options and print.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial

from ._claim import study_lock
from .study import load_study
from ._schema import SPEC_ATTR, stored_dataset, stored_record
from ._trial_record import TrialRecord

EXPORT_FORMATS = ("csv", "json")
OK, WARN, FAIL = "ok", "warn", "fail"
MIN_PYTHON = (3, 11)
BACKEND_LIBRARIES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",), "torch": ("torch",)}
LIBRARIES = ("keras", "optuna", "optuna-integration", "numpy", "scikit-learn", "sqlalchemy")


# --------------------------------------------------------------------------- export


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (nested too) as ``None``, so the output is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def export_record(trial: FrozenTrial) -> dict[str, Any]:
    """Everything an export holds about one trial, as plain (strict-JSON) data."""
    return _finite(TrialRecord(trial).export())


def export_data(name: str, storage: optuna.storages.BaseStorage) -> dict[str, Any]:
    """A study and every one of its trials (all states, by number) as plain data.

    ``StudyNotFoundError`` if there is no study ``name``. Non-finite numbers become ``None``.
    """
    study = load_study(name, storage)
    return {
        "study": name,
        "directions": [d.name.lower() for d in study.directions],
        "metric": stored_record(study.user_attrs, SPEC_ATTR).get("study", {}).get("metric"),
        "dataset": stored_dataset(study.user_attrs) or None,
        "trials": [export_record(t) for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)],
    }


def csv_columns(data: dict[str, Any]) -> list[str]:
    """The CSV header: value(s), one ``param_<name>`` per parameter any trial has, then the attributes."""
    n_objectives = len(data["directions"])
    value_columns = ["value"] if n_objectives == 1 else [f"values_{i}" for i in range(n_objectives)]
    params = sorted({key for trial in data["trials"] for key in trial["params"]})
    return ["number", "state", *value_columns, *(f"param_{p}" for p in params), "datetime_start",
            "datetime_complete", "duration_seconds", "family", "params_count", "train_seconds", "epochs_run",
            "fail_reason", "intermediate_values", "curves"]


def _csv_row(trial: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in trial.items() if k not in ("values", "params", "intermediate_values", "curves")}
    for i, value in enumerate(trial["values"] or []):
        row[f"values_{i}"] = value
    row.update({f"param_{k}": v for k, v in trial["params"].items()})
    row["intermediate_values"] = json.dumps(trial["intermediate_values"], allow_nan=False)
    row["curves"] = json.dumps(trial["curves"], allow_nan=False)
    return row


def write_export(data: dict[str, Any], fmt: str, stream: TextIO) -> None:
    """Write ``export_data``'s result to ``stream`` as CSV (one row per trial) or JSON.

    CSV has one ``param_<name>`` column per parameter (empty where a trial lacks it) and the
    curves and intermediate values as JSON strings; JSON keeps them nested.
    """
    if fmt == "json":
        json.dump(data, stream, indent=2, allow_nan=False)
        stream.write("\n")
        return
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    columns = csv_columns(data)
    writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for trial in data["trials"]:
        writer.writerow(_csv_row(trial))


# --------------------------------------------------------------------------- delete


def delete_study(name: str, storage: optuna.storages.BaseStorage, artifacts: str | Path | None = None) -> int:
    """Delete study ``name``, all its trials and, given the ``artifacts`` folder, its saved models.

    Orphans go too (``remove_orphans``): models of trials or studies that no longer exist, and
    temporary files that killed writes left. Returns how many trials the study held;
    ``StudyNotFoundError`` if there is no such study.
    """
    from optuna.artifacts import get_all_artifact_meta
    from optuna.artifacts.exceptions import ArtifactNotFound

    from ._artifacts import AtomicFileStore, remove_orphans

    with study_lock(storage, name):  # a process creating the study stores it whole under this lock first
        study = load_study(name, storage)
        trials = study.get_trials(deepcopy=False)
        folder = Path(artifacts) if artifacts is not None and Path(artifacts).is_dir() else None
        if folder is not None:
            store = AtomicFileStore(folder)
            for holder in [study, *trials]:
                for meta in get_all_artifact_meta(holder, storage=storage):
                    try:
                        store.remove(meta.artifact_id)
                    except ArtifactNotFound:
                        pass  # evicted earlier, when better models came along
        optuna.delete_study(study_name=name, storage=storage)
    if folder is not None:
        remove_orphans(folder, storage)
    return len(trials)


# --------------------------------------------------------------------------- doctor


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "detail": self.detail}


def run_checks(storage_url: str) -> list[Check]:
    """Check the installation, the Keras backend and devices, the storage and the data sources.

    Nothing here raises for a broken setup: each problem is a ``warn`` or ``fail`` row. The
    storage URL's password never appears in a row. A SQLite file that does not exist yet is
    not created.
    """
    requirements = _requirements()
    backend_library, keras_checks = _keras_checks(requirements)
    checks = [_python_check(), _digitune_check()]
    checks += [_library_check(lib, (lib,), requirements) for lib in LIBRARIES[:1]]
    checks += [backend_library] if backend_library else []
    checks += [_library_check(lib, (lib,), requirements) for lib in LIBRARIES[1:]]
    checks += keras_checks
    checks += _storage_checks(storage_url)
    checks += _data_checks()
    return checks


def _python_check() -> Check:
    version = platform.python_version()
    needed = ".".join(map(str, MIN_PYTHON))
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", FAIL, f"{version} ({sys.executable}); digitune needs Python {needed} or newer")
    return Check("python", OK, f"{version} ({sys.executable})")


def _digitune_check() -> Check:
    try:
        return Check("digitune", OK, metadata.version("digitune"))
    except metadata.PackageNotFoundError:
        return Check("digitune", WARN, "not installed as a package; install it with `pip install -e .`")


def _requirements() -> dict[str, Any]:
    """digitune's own (non-extra) requirements that apply on this machine, by canonical name."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    found = {}
    try:
        lines = metadata.requires("digitune") or []
    except metadata.PackageNotFoundError:
        return found
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            found[canonicalize_name(req.name)] = req
    return found


def _library_check(check: str, dists: Iterable[str], requirements: dict[str, Any],
                   module_version: str | None = None) -> Check:
    """The installed version of the first of ``dists`` found, against digitune's requirement on it."""
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    for dist in dists:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        label = version if dist == check else f"{version} ({dist})"
        req = requirements.get(canonicalize_name(dist))
        if req is not None and req.specifier:
            try:
                if not req.specifier.contains(Version(version), prereleases=True):
                    return Check(check, WARN, f"{label}; digitune needs {req.name}{req.specifier}")
            except InvalidVersion:
                pass
        return Check(check, OK, label)
    if module_version:  # imported fine but installed without metadata (e.g. a source build)
        return Check(check, OK, module_version)
    return Check(check, FAIL, f"not installed; install it with `pip install {next(iter(dists))}`")


def _keras_checks(requirements: dict[str, Any]) -> tuple[Check | None, list[Check]]:
    """The backend library's version, then the Keras backend and its devices (imports Keras here)."""
    env = os.environ.get("KERAS_BACKEND")
    env_text = f" (KERAS_BACKEND={env})" if env else ""
    try:
        import keras

        backend = keras.backend.backend()
    except Exception as exc:  # noqa: BLE001  (a missing or broken backend fails in many ways)
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return None, [Check("backend", FAIL, f"Keras cannot start{env_text}: {reason}"),
                      Check("devices", FAIL, "not checked: Keras cannot start")]
    library_check = None
    if backend in BACKEND_LIBRARIES:
        module_version = getattr(sys.modules.get(backend) or importlib.import_module(backend), "__version__", None)
        library_check = _library_check(backend, BACKEND_LIBRARIES[backend], requirements, module_version)
    checks = []
    if env and env != backend:
        checks.append(Check("backend", WARN, f"{backend}, but KERAS_BACKEND={env}: Keras was imported before the "
                                             f"variable was set, or its config file says otherwise"))
    else:
        checks.append(Check("backend", OK, backend + env_text))
    try:
        devices = keras.distribution.list_devices()
    except Exception as exc:  # noqa: BLE001  (a doctor reports, it does not crash)
        checks.append(Check("devices", WARN, f"cannot list devices: {type(exc).__name__}: {exc}".splitlines()[0]))
    else:
        checks.append(Check("devices", OK if devices else WARN, ", ".join(devices) if devices else "none found"))
    return library_check, checks


def _storage_checks(url: str) -> list[Check]:
    """Can the storage be opened, and is its schema the one this Optuna writes?"""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from .storage._open import NoStudyDatabaseError, StorageError, read_storage, redact

    shown = redact(url)
    password = None
    try:
        parsed = make_url(url)
        password = parsed.password
    except (ArgumentError, ValueError):  # open_storage reports a bad URL below
        parsed = None

    def scrub(text: str) -> str:
        return text.replace(str(password), "***") if password else text

    if parsed is not None and parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        if not path.exists():
            parent = next((p for p in path.absolute().parents if p.exists()), Path("/"))
            if not os.access(parent, os.W_OK):
                return [Check("storage", FAIL, f"{shown}: no database yet, and {parent} is not writable"),
                        Check("schema", WARN, "not checked: there is no database")]
            return [Check("storage", OK, f"{shown}: no database yet; the first `digitune run` creates it"),
                    Check("schema", OK, "a new database gets the current schema")]

    try:
        storage = read_storage(url)
    except StorageError as exc:
        if isinstance(exc, NoStudyDatabaseError):  # a new server database: the first run creates the tables
            return [Check("storage", WARN, scrub(str(exc))), Check("schema", WARN, "not checked: no Optuna tables")]
        if isinstance(exc.__cause__, RuntimeError):  # reachable, but Optuna refuses its schema version
            return [Check("storage", OK, f"{shown}: reachable"), _schema_check(url, shown, scrub, None)]
        return [Check("storage", FAIL, scrub(str(exc))), Check("schema", WARN, "not checked: the storage cannot be opened")]
    try:
        n_studies = len(optuna.get_all_study_names(storage=storage))
        storage_row = Check("storage", OK, f"{shown}: reachable, {n_studies} "
                                           f"{'study' if n_studies == 1 else 'studies'}")
        if isinstance(storage, optuna.storages.RDBStorage):
            schema_row = _schema_check(url, shown, scrub, storage)
        else:  # a gRPC proxy: the schema is the proxy's database's, checked where it runs
            schema_row = Check("schema", OK, "not checked through a storage proxy; run doctor with the proxy's "
                                             "database URL")
    finally:
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.remove_session()
            storage.engine.dispose()
    return [storage_row, schema_row]


def _schema_check(url: str, shown: str, scrub: Callable[[str], str], storage: optuna.storages.RDBStorage | None) -> Check:
    own = storage is None
    try:
        if own:  # open without Optuna's compatibility check, which is what refused it
            storage = optuna.storages.RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
        current, head = storage.get_current_version(), storage.get_head_version()
        known = storage.get_all_versions()
    except Exception as exc:  # noqa: BLE001  (a doctor reports, it does not crash)
        return Check("schema", FAIL, scrub(f"cannot read the schema version: {type(exc).__name__}: {exc}"
                                           .splitlines()[0]))
    finally:
        if own and storage is not None:
            storage.remove_session()
            storage.engine.dispose()
    if current == head:
        return Check("schema", OK, f"current ({current})")
    if current in known:
        return Check("schema", WARN, f"{current} is behind this Optuna's {head}; "
                                     f"run `optuna storage upgrade --storage {shown}`")
    return Check("schema", WARN, f"{current} is newer than this Optuna ({optuna.__version__}, schema {head}) knows; "
                                 f"upgrade Optuna with `pip install -U optuna`")


def _data_checks() -> list[Check]:
    from digitune.models._data import FASHION_MNIST_DIR, _keras_home
    from digitune.models._formats import find_idx_files

    checks = [Check("data: digits", OK, "bundled with scikit-learn")]
    files = find_idx_files(FASHION_MNIST_DIR) if FASHION_MNIST_DIR.is_dir() else {}
    if len(files) == 4:
        checks.append(Check("data: fashion-mnist", OK, str(FASHION_MNIST_DIR)))
    else:
        checks.append(Check("data: fashion-mnist", WARN, f"{FASHION_MNIST_DIR} lacks its 4 IDX files; "
                                                         f"apt-get install dataset-fashion-mnist"))
    cache = _keras_home() / "datasets" / "mnist.npz"
    if cache.is_file():
        checks.append(Check("data: mnist", OK, str(cache)))
    else:
        checks.append(Check("data: mnist", WARN, f"not cached at {cache}; will be downloaded on first use "
                                                 f"where the network allows"))
    return checks
