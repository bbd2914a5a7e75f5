"""The ``export-model`` command and the final-model lines of ``show`` and ``best``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._common import ArtifactsOption, StorageOption, out, print_table, storage_from, user_errors


@user_errors
def export_model(
    name: Annotated[str, typer.Argument(help="Study name, as `digitune studies` lists it.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the model (.keras).")],
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    ensemble: Annotated[Optional[int], typer.Option(
        "--ensemble", min=2, metavar="K", help="Average the class probabilities of the K best trials' saved models "
                                               "(study.save_models sets how many are kept).")] = None,
    retrain: Annotated[bool, typer.Option(
        "--retrain", help="Retrain the best trial's config (with --ensemble: each of the K best) on train + "
                          "validation instead of taking the saved model.")] = False,
) -> None:
    """Export the study's final model and record its held-out test accuracy (and validation accuracy) on the study.

    The best trial's saved model by default (retrained on train + validation if it was not
    kept); --retrain always retrains; --ensemble K averages the K best saved models.
    """
    from .. import ModelKeeper, artifact_dir, export_model as export, resolve_storage_url
    from .._study_data import study_with_data

    study, spec, data = study_with_data(name, storage_from(storage))
    keeper = ModelKeeper(artifact_dir(resolve_storage_url(storage), artifacts), spec.save_models)
    result = export(study, data, output, keeper, ensemble=ensemble, retrain=retrain)
    what = f"trial {result.trial}" if ensemble is None else result.kind
    validation = f"validation accuracy {result.validation_accuracy:.4f}" \
        if result.validation_accuracy is not None else f"no validation accuracy ({result.validation_note})"
    out.print(f"exported {what} ({result.source}) to {result.path}; held-out test accuracy "
              f"{result.test_accuracy:.4f} on {len(data.y_test)} images, {validation} (recorded on study "
              f"{name!r} as {result.kind!r})", highlight=False)


def print_final_models(summary: dict[str, Any]) -> None:
    """The final models ``export-model`` recorded (``_final_records.final_summary``), and which is best on validation."""
    records = summary["records"]
    if not records:
        out.print("final models: none exported yet (digitune export-model NAME -o model.keras)", highlight=False)
        return
    best = summary["best_on_validation"]
    chosen = f"{best} is best on validation" if best else "none has a validation score"
    out.print(f"final models ({chosen}; test accuracy is for reporting, not for choosing):", highlight=False)
    rows, unscored = [], {}  # unscored: why a kind has no validation score -> the kinds it applies to
    for kind, record in records.items():
        validation, test = record.get("validation_accuracy"), record.get("test_accuracy")
        if not isinstance(validation, (int, float)):
            unscored.setdefault(str(record.get("validation_note") or "not recorded"), []).append(kind)
        rows.append((f"{kind}{' *' if kind == best else ''}", ", ".join(str(n) for n in record.get("trials") or []),
                     _score(validation), _score(test), str(record.get("at") or "-")))
    print_table(("kind", "trials", "validation", "test", "exported"), rows)
    for note, kinds in unscored.items():
        out.print(f"  no validation score for {', '.join(kinds)}: {note}", highlight=False)


def _score(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"
