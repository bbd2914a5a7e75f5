"""The final model of a study: export it (saved, retrained on train + validation, or an ensemble) and predict."""

from __future__ import annotations

import csv
import datetime
import errno
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from digitune.models import DataError, Dataset, TrainConfig, atomic_open, model_config_from_dict, read_images

from ._artifacts import ModelKeeper
from ._ranking import counted, rank
from ._final_records import NO_VALIDATION, RETRAINED, SINGLE, ensemble_kind, record_final
from ._schema import SAVED_ATTR
from ._schema import stored_record

RETRAINED_SOURCE = "retrained on train + validation"


class NoModelError(LookupError):
    """The study has no completed (feasible) trial to take a model from, or too few kept models."""


@dataclass
class ExportResult:
    trial: int  # the best trial (of an ensemble's members, the first)
    path: Path
    source: str  # "saved", "retrained on train + validation", or an ensemble's description
    test_accuracy: float
    test_loss: float
    kind: str = SINGLE  # single, retrained, ensemble-K or retrained-ensemble-K
    trials: list[int] = field(default_factory=list)
    validation_accuracy: float | None = None  # None for a model trained on the validation split...
    validation_note: str | None = None  # ...and why


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The completed feasible trials, best first (by the first objective for multi-objective studies)."""
    return rank(counted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))), study.directions[0])


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The best feasible completed trial (by the first objective for multi-objective studies)."""
    ranked = ranked_trials(study)
    if not ranked:
        raise NoModelError(f"study {study.study_name!r} has no completed feasible trial yet; "
                           f"run it first (digitune run or digitune worker)")
    return ranked[0]


def kept_model(study: optuna.Study, keeper: ModelKeeper | None, number: int):
    """The model of trial ``number`` as the search saved it (compiled), or None if it was not kept."""
    from digitune.models import load_model

    if keeper is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        fetched = Path(tmp) / "model.keras"
        if keeper.fetch(study, number, fetched):
            return load_model(fetched, compile=True)  # re-saved later: portable even if kept by an older digitune
    return None


def retrained_model(trial: FrozenTrial, dataset: Dataset):
    """``trial``'s config trained on train + validation for the epochs the trial ran (no early stopping)."""
    from digitune.models import train

    model_config = model_config_from_dict(trial.user_attrs["model_config"])
    train_config = TrainConfig.from_dict(trial.user_attrs["train_config"])
    epochs = int(trial.user_attrs.get("epochs_run") or train_config.epochs)
    train_config = TrainConfig.from_dict({**train_config.to_dict(), "epochs": epochs,
                                          "early_stopping_patience": 0})
    return train(model_config, train_config, dataset, merge_validation=True).model


def best_model(study: optuna.Study, dataset: Dataset, keeper: ModelKeeper | None, destination: Path,
               *, retrain: bool = False):
    """Write the best trial's model to ``destination``; returns (trial, model, source).

    The model saved during the search if it was kept (and ``retrain`` is not asked for), else
    the trial's config retrained on train + validation for the epochs the trial ran.
    ``destination`` is replaced only once the new file is complete (``models.save_model``):
    an interruption leaves the old one.
    """
    trial = best_trial(study)
    model, source = (None if retrain else kept_model(study, keeper, trial.number)), "saved"
    if model is None:
        model, source = retrained_model(trial, dataset), RETRAINED_SOURCE
    write_model(model, destination)
    return trial, model, source


def write_model(model, destination: Path) -> None:
    """``models.save_model`` to ``destination``, its folder made; a failed write is one ``DataError``."""
    from digitune.models import save_model

    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, destination)
    except OSError as exc:
        raise DataError(_unwritable(destination, exc)) from exc


def ensemble_members(study: optuna.Study, keeper: ModelKeeper | None, size: int, *,
                     retrain: bool = False) -> list[FrozenTrial]:
    """The ``size`` best completed feasible trials whose model was kept (with ``retrain``: any); else ``NoModelError``."""
    if size < 2:
        raise ValueError(f"ensemble_members: expected an ensemble of at least two models. Received: size={size}")
    ranked = ranked_trials(study) or [best_trial(study)]  # best_trial says there is no trial yet
    saved = stored_record(study.user_attrs, SAVED_ATTR)
    pool = ranked if retrain else [t for t in ranked if str(t.number) in saved]
    if len(pool) >= size:
        return pool[:size]
    fewer = f"ask for --ensemble {len(pool)}, or " if len(pool) >= 2 else ""
    if retrain:
        raise NoModelError(f"--ensemble {size} --retrain: study {study.study_name!r} has {len(pool)} completed "
                           f"feasible trials, fewer than {size}; {fewer}run more trials first")
    setting = f" (study.save_models = {keeper.keep})" if keeper is not None else ""
    raise NoModelError(
        f"--ensemble {size}: study {study.study_name!r} keeps the saved models of {len(pool)} completed feasible "
        f"trials{setting}, fewer than {size}; {fewer}raise save_models to {size} or more in the study file and run "
        f"more trials (models dropped before stay gone), or add --retrain to retrain the {size} best configs")


def ensemble_model(study: optuna.Study, dataset: Dataset, keeper: ModelKeeper | None, destination: Path,
                   size: int, *, retrain: bool = False):
    """Write the average of the ``size`` best trials' models to ``destination``; returns (trials, model, source).

    The models saved during the search (every one must be in the artifact store), or with
    ``retrain`` each trial's config retrained on train + validation (``retrained_model``).
    """
    from digitune.models import average_model

    trials = ensemble_members(study, keeper, size, retrain=retrain)
    members = []
    for trial in trials:
        model = retrained_model(trial, dataset) if retrain else kept_model(study, keeper, trial.number)
        if model is None:
            raise NoModelError(f"the saved model of trial {trial.number} is not in the artifact store "
                               f"{keeper.folder if keeper else '(none given)'}; name the folder the search saved "
                               f"it in with --artifacts, or add --retrain")
        members.append(model)
    model = average_model(members, name=ensemble_kind(size, retrained=retrain).replace("-", "_"))
    write_model(model, destination)
    numbers = ", ".join(str(t.number) for t in trials)
    return trials, model, (f"mean of trials {numbers} {RETRAINED_SOURCE}" if retrain else
                           f"mean of the saved models of trials {numbers}")


def _unwritable(path: Path, exc: OSError) -> str:
    hint = "free some space, or write elsewhere with -o" if exc.errno == errno.ENOSPC else "write elsewhere with -o"
    return f"cannot write {path}: {exc.strerror or exc}; nothing was changed there ({hint})"


def export_model(study: optuna.Study, dataset: Dataset, destination: str | os.PathLike,
                 keeper: ModelKeeper | None = None, *, ensemble: int | None = None,
                 retrain: bool = False) -> ExportResult:
    """Export the study's final model to ``destination`` and record its scores on the study.

    The best trial's model (``retrain``: its config retrained on train + validation), or with
    ``ensemble=K`` the average of the K best trials' models (``_ensemble``). Its held-out test
    accuracy is recorded under its kind (``_final_records``), with its validation accuracy
    unless it was trained on the validation split.
    """
    from digitune.models import evaluate

    destination = Path(destination)
    if destination.suffix != ".keras":
        raise DataError(f"{destination}: a model file must end in .keras (Keras 3's format)")
    if ensemble is not None:
        trials, model, source = ensemble_model(study, dataset, keeper, destination, ensemble, retrain=retrain)
        kind = ensemble_kind(ensemble, retrained=retrain)
    else:
        trial, model, source = best_model(study, dataset, keeper, destination, retrain=retrain)
        trials, kind = [trial], RETRAINED if source == RETRAINED_SOURCE else SINGLE
    loss, accuracy = evaluate(model, dataset.x_test, dataset.y_test)
    note = NO_VALIDATION if retrain or source == RETRAINED_SOURCE else \
        None if len(dataset.y_val) else "the study's data has no validation split"
    validation = None if note else evaluate(model, dataset.x_val, dataset.y_val)[1]
    numbers = [t.number for t in trials]
    record_final(study, {
        "kind": kind, "trial": numbers[0], "trials": numbers, "model": source,
        "test_accuracy": accuracy, "test_loss": loss, "n_test": int(len(dataset.y_test)),
        "validation_accuracy": validation, "n_validation": int(len(dataset.y_val)),
        **({"validation_note": note} if note else {}),
        "exported_to": str(destination.resolve()),
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    return ExportResult(numbers[0], destination, source, accuracy, loss, kind, numbers, validation, note)


def read_prediction_images(data_path: str | os.PathLike, image_shape: tuple[int, ...]):
    """The images at ``data_path`` to label, checked against the study's image size."""
    x, ids, _format = read_images(data_path)
    if tuple(x.shape[1:3]) != tuple(image_shape[:2]):
        raise DataError(
            f"{data_path}: images are {x.shape[1]}x{x.shape[2]} but the model was trained on "
            f"{image_shape[0]}x{image_shape[1]} images; predict with data of the study's size")
    return x, ids


def write_predictions(model, images, output: str | os.PathLike) -> tuple[int, str]:
    """Label ``images`` (from ``read_prediction_images``) and write a submission CSV; returns (rows, header).

    Images with file names (the "Identify the Digits" layout, a folder of PNGs) give
    ``filename,label``; the others (a Kaggle CSV, npz, IDX) give ``ImageId,Label`` with
    ImageId counting from 1, as Kaggle expects.
    """
    from digitune.models import predict_proba

    x, ids = images
    labels = predict_proba(model, x).argmax(axis=1)
    header = ("filename", "label") if ids is not None else ("ImageId", "Label")
    rows = zip(ids, labels) if ids is not None else enumerate(labels, start=1)
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(output, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows((key, int(label)) for key, label in rows)
    except OSError as exc:
        raise DataError(_unwritable(output, exc)) from exc
    return len(labels), ",".join(header)
