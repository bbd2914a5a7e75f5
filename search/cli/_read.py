"""The commands that read a study: ``predict``, ``studies``, ``show`` and ``best``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._common import ArtifactsOption, JsonOption, StorageOption, err, out, print_json, print_table, storage_from, user_errors  # noqa: E501
from ._final import print_final_models


@user_errors
def predict(
    name: Annotated[str, typer.Argument(help="Study name, as `digitune studies` lists it.")],
    data_path: Annotated[Path, typer.Option("--data", help="Images to label: a PNG, a folder of PNGs, an "
                                                           "'Identify the Digits' folder, a Kaggle test.csv, "
                                                           "an npz or an IDX folder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Submission CSV to write.")],
    model_file: Annotated[Optional[Path], typer.Option(
        "--model", help="A model exported with export-model (default: the study's best model).")] = None,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Label images with the study's best model and write a submission CSV."""
    import tempfile

    from digitune.models import load_model
    from .. import ModelKeeper, artifact_dir, best_model, load_study, read_prediction_images, \
        resolve_storage_url, write_predictions

    from .._schema import stored_dataset

    study = load_study(name, storage_from(storage, read_only=True))
    recorded_shape = stored_dataset(study.user_attrs).get("image_shape")
    if recorded_shape:  # read the images first: a bad path fails before any model is loaded or trained
        images = read_prediction_images(data_path, tuple(recorded_shape))
    if model_file is not None:
        model = load_model(model_file)
    else:
        study, spec, data = _study_with_data(name, storage, read_only=True)
        keeper = ModelKeeper(artifact_dir(resolve_storage_url(storage), artifacts), spec.save_models)
        with tempfile.TemporaryDirectory() as tmp:
            trial, model, source = best_model(study, data, keeper, Path(tmp) / "model.keras")
        err.print(f"model: trial {trial.number} ({source})", highlight=False)
    if not recorded_shape:
        images = read_prediction_images(data_path, tuple(model.input_shape[1:3]))
    rows, header = write_predictions(model, images, output)
    out.print(f"wrote {rows} predictions to {output} ({header})", highlight=False)


def _study_with_data(name: str, storage: str | None, *, read_only: bool = False):
    """The study, its stored spec and the data it was run on (refused if the data changed)."""
    from .._study_data import study_with_data

    return study_with_data(name, storage_from(storage, read_only=read_only))


@user_errors
def studies(storage: StorageOption = None, as_json: JsonOption = False) -> None:
    """List the studies in the storage: trials by state and best value."""
    from .. import list_studies

    rows = list_studies(storage_from(storage, read_only=True))
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no studies yet; start one with: digitune run studies/quickstart.toml")
        return
    print_table(("study", "dataset", "complete", "pruned", "failed", "running", "best", "last activity"),
                ((row["name"], row["dataset"] or "-", *(str(row["trials"][k]) for k in ("complete", "pruned", "fail",
                  "running")), "-" if row["best_value"] is None else f"{row['best_value']:.4f}",
                  row["last_activity"] or "-") for row in rows))


@user_errors
def show(
    name: Annotated[str, typer.Argument(help="Study name, as `digitune studies` lists it.")],
    storage: StorageOption = None,
    top: Annotated[int, typer.Option("--top", min=1, help="How many of the best trials to list.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Show a study: its objectives, trials by state, best trial (or Pareto front) and top trials."""
    from .. import study_detail

    detail = study_detail(name, storage_from(storage, read_only=True), top=top)
    if as_json:
        print_json(detail, default=str)
        return
    _print_header(detail)
    _print_best(detail)
    if detail["top"] and "pareto_front" not in detail:
        out.print(f"top {len(detail['top'])}:")
        _print_trials(detail["top"])
    print_final_models(detail["final_models"])


@user_errors
def best(
    name: Annotated[str, typer.Argument(help="Study name, as `digitune studies` lists it.")],
    storage: StorageOption = None,
    as_json: JsonOption = False,
) -> None:
    """The best trial (or, for a multi-objective study, the Pareto front): parameters and scores."""
    from .. import study_detail

    detail = study_detail(name, storage_from(storage, read_only=True), top=1)
    result = detail.get("pareto_front") if "pareto_front" in detail else detail["best"]
    if as_json:  # a trial's record, with the final models beside its fields (a Pareto front stays a list)
        result = {**result, "final_models": detail["final_models"]} if isinstance(result, dict) else result
        print_json(result, default=str)
        return
    _print_best(detail)
    print_final_models(detail["final_models"])


def _print_header(detail: dict[str, Any]) -> None:
    t = detail["trials"]
    objectives = ", ".join(detail["objectives"])
    out.print(f"study {detail['name']} ({objectives}) on {(detail['dataset'] or {}).get('name', '?')}: "
              f"{t['complete']} complete, {t['pruned']} pruned, {t['fail']} failed, {t['running']} running",
              highlight=False)


def _print_best(detail: dict[str, Any]) -> None:
    if "pareto_front" in detail:
        out.print(f"Pareto front ({', '.join(detail['objectives'])}): {len(detail['pareto_front'])} trials")
        _print_trials(detail["pareto_front"])
        return
    best = detail["best"]
    if best is None:
        out.print("no completed (feasible) trial yet")
        return
    note = _note(best)
    tag = f", {note}" if note else ""
    out.print(f"best: trial {best['number']} value {best['value']:.4f} ({best['family']}, "
              f"{best['params_count'] or 0:,} params, {best['epochs_run']} epochs, "
              f"{best['train_seconds'] or 0:.1f} s{tag})", highlight=False)
    for key, value in best["params"].items():
        out.print(f"  {key} = {_fmt(value)}", highlight=False)


def _print_trials(rows: list[dict[str, Any]]) -> None:
    print_table(("trial", "value", "family", "params", "epochs", "seconds", "note", "parameters"),
                (_trial_cells(row) for row in rows))


def _trial_cells(row: dict[str, Any]) -> tuple[str, ...]:
    params = ", ".join(f"{k.removeprefix(str(row['family']) + '_')}={_fmt(v)}" for k, v in row["params"].items()
                       if k != "family")
    values = ", ".join(f"{v:.4g}" for v in row["values"] or [])
    return (str(row["number"]), values, row["family"] or "-", f"{row['params_count'] or 0:,}",
            str(row["epochs_run"]), f"{row['train_seconds'] or 0:.1f}", _note(row), params)


def _note(row: dict[str, Any]) -> str:
    """What sets a trial apart: a baseline, the start, a warm start, the deadline, infeasible."""
    notes = [row["baseline"] or "", "start" if row.get("start") else "",
             f"warm {row['warm_start']}" if row.get("warm_start") else "",
             "deadline" if row.get("stopped_at_deadline") else "", "infeasible" if not row["feasible"] else ""]
    return ", ".join(n for n in notes if n)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
