"""The ``export``, ``delete`` and ``doctor`` commands: thin wrappers over ``search._admin``."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ._common import (
    ArtifactsOption,
    JsonOption,
    StorageOption,
    err,
    out,
    print_json,
    print_table,
    storage_from,
    user_errors,
)

NameArgument = Annotated[str, typer.Argument(help="Study name, as `digitune studies` lists it.")]


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"


@user_errors
def export(
    name: NameArgument,
    fmt: Annotated[ExportFormat, typer.Option(
        "--format", "-f", help="csv: one row per trial, a param_<name> column per parameter; json: nested.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", dir_okay=False, help="Write to this file instead of standard output.")] = None,
    storage: StorageOption = None,
) -> None:
    """Export every trial of a study (all states): values, parameters, times, sizes and learning curves."""
    from digitune.models import atomic_open
    from .. import export_data, write_export

    data = export_data(name, storage_from(storage, read_only=True))
    if output is None:
        write_export(data, fmt.value, sys.stdout)
        sys.stdout.flush()
        return
    try:
        with atomic_open(output, "w", encoding="utf-8", newline="") as stream:
            write_export(data, fmt.value, stream)
    except OSError as exc:
        err.print(f"error: cannot write {output}: {exc.strerror or exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    err.print(f"exported {len(data['trials'])} trials of study {name!r} to {output}", markup=False, highlight=False)


@user_errors
def delete(
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Delete a study, all its trials and its saved models."""
    from optuna.trial import TrialState

    from .. import artifact_dir, delete_study, load_study, resolve_storage_url

    store = storage_from(storage)
    trials = load_study(name, store).get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    if not yes:
        if running:
            err.print(f"warning: {running} of its trials are running; their workers will fail", markup=False,
                      highlight=False)
        try:
            confirmed = typer.confirm(f"Delete study {name} with {len(trials)} trials?", default=False)
        except typer.Abort:  # end of input: nobody said yes
            confirmed = False
        if not confirmed:
            out.print("aborted; nothing deleted", markup=False, highlight=False)
            return
    deleted = delete_study(name, store, artifact_dir(resolve_storage_url(storage), artifacts))
    out.print(f"deleted study {name!r} and its {deleted} trials", markup=False, highlight=False)


STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def doctor(storage: StorageOption = None, as_json: JsonOption = False) -> None:
    """Check Python, the libraries, the Keras backend and devices, the storage and the data sources.

    Exits 1 if any check fails (warnings do not count).
    """
    from .. import resolve_storage_url, run_checks

    checks = run_checks(resolve_storage_url(storage))
    if as_json:
        print_json([c.to_dict() for c in checks])
    else:
        print_table(("check", "status", "detail"),
                    ((Text(c.name), Text(c.status, style=STATUS_STYLE[c.status]), Text(c.detail)) for c in checks))
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
