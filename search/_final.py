"""The final model of a study: export it (saved, or retrained on train + validation) and predict."""

from __future__ import annotations

import csv
import datetime
import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from models import DataError, Dataset, TrainConfig, atomic_open, model_config_from_dict, read_images

from ._artifacts import ModelKeeper, is_feasible

TEST_ATTR = "test_accuracy"


class NoModelError(LookupError):
    """The study has no completed (feasible) trial to take a model from."""


@dataclass
class ExportResult:
    trial: int
    path: Path
    source: str  # "saved" or "retrained on train + validation"
    test_accuracy: float
    test_loss: float


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The best feasible completed trial (by the first objective for multi-objective studies)."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values and is_feasible(t)]
    if not complete:
        raise NoModelError(f"study {study.study_name!r} has no completed feasible trial yet; "
                           f"run it first (digitune run or digitune worker)")
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return (max if maximize else min)(complete, key=lambda t: t.values[0])


def best_model(study: optuna.Study, dataset: Dataset, keeper: ModelKeeper | None, destination: Path):
    """Write the best trial's model to ``destination``; returns (trial, model, source).

    The model saved during the search if it was kept, else the trial's config retrained on
    train + validation for the epochs the trial ran. ``destination`` is replaced only once
    the new file is complete (``models.save_model``): an interruption leaves the old one.
    """
    from models import load_model, save_model, train

    trial = best_trial(study)
    model, source = None, "saved"
    if keeper is not None:
        with tempfile.TemporaryDirectory() as tmp:
            fetched = Path(tmp) / "model.keras"
            if keeper.fetch(study, trial.number, fetched):
                model = load_model(fetched, compile=True)  # re-saved below: portable even if kept by an older digitune
    if model is None:
        model_config = model_config_from_dict(trial.user_attrs["model_config"])
        train_config = TrainConfig.from_dict(trial.user_attrs["train_config"])
        epochs = int(trial.user_attrs.get("epochs_run") or train_config.epochs)
        train_config = TrainConfig.from_dict({**train_config.to_dict(), "epochs": epochs,
                                              "early_stopping_patience": 0})
        model = train(model_config, train_config, dataset, merge_validation=True).model
        source = "retrained on train + validation"
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, destination)
    except OSError as exc:
        raise DataError(_unwritable(destination, exc)) from exc
    return trial, model, source


def _unwritable(path: Path, exc: OSError) -> str:
    hint = "free some space, or write elsewhere with -o" if exc.errno == errno.ENOSPC else "write elsewhere with -o"
    return f"cannot write {path}: {exc.strerror or exc}; nothing was changed there ({hint})"


def export_model(study: optuna.Study, dataset: Dataset, destination: str | os.PathLike,
                 keeper: ModelKeeper | None = None) -> ExportResult:
    """Export the best model to ``destination`` and record its held-out test accuracy on the study."""
    import numpy as np

    from models import predict_proba

    destination = Path(destination)
    if destination.suffix != ".keras":
        raise DataError(f"{destination}: a model file must end in .keras (Keras 3's format)")
    trial, model, source = best_model(study, dataset, keeper, destination)
    probabilities = predict_proba(model, dataset.x_test)
    accuracy = float((probabilities.argmax(axis=1) == dataset.y_test).mean())
    eps = 1e-7
    loss = float(-np.log(np.clip(probabilities[np.arange(len(dataset.y_test)), dataset.y_test], eps, 1)).mean())
    study.set_user_attr(TEST_ATTR, {
        "trial": trial.number, "test_accuracy": accuracy, "test_loss": loss, "model": source,
        "n_test": int(len(dataset.y_test)), "exported_to": str(destination.resolve()),
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    return ExportResult(trial.number, destination, source, accuracy, loss)


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
    from models import predict_proba

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
