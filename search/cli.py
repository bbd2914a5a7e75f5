"""The ``digitune`` command line: thin commands over ``search`` and ``models``.

Each command parses its options, calls one library function and prints. A user error
(bad study file, bad data, unreachable storage, unknown study) is one line on stderr and
exit code 2; anything else is a bug and exits 1.
"""

from __future__ import annotations

import os

# Before anything imports TensorFlow: quiet its C++ logs, and keep oneDNN's reordered float
# arithmetic off so that the same seed gives the same numbers run after run.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import dataclasses  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any, Callable, Optional  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.logging import RichHandler  # noqa: E402
from rich.table import Table  # noqa: E402

app = typer.Typer(
    name="digitune",
    help="Hyperparameter search for Keras digit classifiers, persisted as Optuna studies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output gets wide lines rather than Rich's 80-column default.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)

StorageOption = Annotated[Optional[str], typer.Option(
    "--storage", help="Study database URL (sqlite:///file.db or postgresql+psycopg://...); "
                      "default $DIGITUNE_STORAGE, else sqlite:///studies/digitune.db.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def _user_errors(func: Callable) -> Callable:
    """Turn digitune's user errors into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from models import ConfigError, DataError

        from search import SpecError, StorageError, StudyNotFoundError

        try:
            return func(*args, **kwargs)
        except (SpecError, DataError, ConfigError, StorageError, StudyNotFoundError) as exc:
            err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _setup_logging() -> None:
    import optuna

    # digitune logs one line per trial, failures with their reason; Optuna's own lines would repeat them.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logger = logging.getLogger("digitune")
    if not logger.handlers:
        if err.is_terminal:
            handler: logging.Handler = RichHandler(console=err, show_path=False, show_level=False, markup=False)
            handler.setFormatter(logging.Formatter("%(message)s"))
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _storage(url: str | None):
    from search import open_storage, resolve_storage_url

    return open_storage(resolve_storage_url(url))


@app.command()
@_user_errors
def run(
    study_file: Annotated[Path, typer.Argument(help="Study definition (TOML), e.g. studies/quickstart.toml.")],
    trials: Annotated[Optional[int], typer.Option(
        "--trials", min=1, help="Finished trials the study should hold (default: the file's study.trials).")] = None,
    timeout: Annotated[Optional[float], typer.Option(
        "--timeout", min=1, help="Stop starting new trials after this many seconds.")] = None,
    storage: StorageOption = None,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", help="Data source instead of the file's: digits, fashion-mnist, mnist or a path.")] = None,
) -> None:
    """Run (or continue) the study in STUDY_FILE until it holds --trials finished trials."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from models import load_dataset
    from search import FINISHED, count_finished, load_spec, open_study, redact, resolve_storage_url, run_study

    _setup_logging()
    spec = load_spec(study_file)
    if dataset:
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, source=dataset))
    url = resolve_storage_url(storage)
    store = _storage(url)
    data = load_dataset(spec.data.source, **spec.data.load_kwargs())
    info = data.info
    err.print(f"data: {info.name} {info.image_shape[0]}x{info.image_shape[1]}, {info.n_train} train / "
              f"{info.n_val} validation / {info.n_test} test ({info.source})", highlight=False)
    study = open_study(spec, store, data)
    target = trials or spec.trials
    already = count_finished(study)
    err.print(f"study {spec.name!r} in {redact(url)}: {already} finished trials, target {target}", highlight=False)

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
        console=err, transient=False,
    )
    task = progress.add_task("trials", total=target, completed=min(already, target), best=_best_text(study))

    def on_trial(study, trial) -> None:
        if trial.state in FINISHED:
            progress.advance(task)
        progress.update(task, best=_best_text(study))

    try:
        with progress:
            summary = run_study(spec, store, dataset=data, n_trials=target, timeout=timeout, on_trial=on_trial)
    except KeyboardInterrupt:
        err.print(f"interrupted: the running trial is marked failed and {count_finished(study)} finished trials "
                  f"are stored; run the same command again to continue study {spec.name!r}", highlight=False)
        raise typer.Exit(130) from None
    err.print(f"study {spec.name!r}: {summary.finished} finished trials ({summary.ran} run now, "
              f"{summary.failed} failed), best {_best_text(summary.study)}. "
              f"See: digitune show {spec.name}", highlight=False)


def _best_text(study) -> str:
    try:
        return f"{study.best_value:.4f}"
    except ValueError:
        return "-"


@app.command()
@_user_errors
def studies(storage: StorageOption = None, as_json: JsonOption = False) -> None:
    """List the studies in the storage: trials by state and best value."""
    from search import list_studies

    rows = list_studies(_storage(storage))
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print("no studies yet; start one with: digitune run studies/quickstart.toml")
        return
    table = Table("study", "dataset", "complete", "pruned", "failed", "running", "best", "last activity",
                  box=None, header_style="bold")
    for row in rows:
        t = row["trials"]
        best = "-" if row["best_value"] is None else f"{row['best_value']:.4f}"
        table.add_row(row["name"], row["dataset"] or "-", str(t["complete"]), str(t["pruned"]), str(t["fail"]),
                      str(t["running"]), best, row["last_activity"] or "-")
    out.print(table)


@app.command()
@_user_errors
def show(
    name: Annotated[str, typer.Argument(help="Study name, as `digitune studies` lists it.")],
    storage: StorageOption = None,
    top: Annotated[int, typer.Option("--top", min=1, help="How many of the best trials to list.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Show a study's best trial and its top trials."""
    from search import study_detail

    detail = study_detail(name, _storage(storage), top=top)
    if as_json:
        out.print_json(json.dumps(detail))
        return
    t = detail["trials"]
    out.print(f"study {name} ({detail['metric'] or 'value'}, {detail['direction']}) on "
              f"{(detail['dataset'] or {}).get('name', '?')}: {t['complete']} complete, {t['pruned']} pruned, "
              f"{t['fail']} failed, {t['running']} running", highlight=False)
    best = detail["best"]
    if best is None:
        out.print("no completed trial yet")
        return
    out.print(f"best: trial {best['number']} value {best['value']:.4f} ({best['family']}, "
              f"{best['params_count'] or 0:,} params, {best['epochs_run']} epochs, {best['train_seconds']:.1f} s)",
              highlight=False)
    for key, value in best["params"].items():
        out.print(f"  {key} = {_fmt(value)}", highlight=False)
    table = Table("trial", "value", "family", "params", "epochs", "seconds", "parameters", box=None,
                  header_style="bold")
    for row in detail["top"]:
        params = ", ".join(f"{k.removeprefix(str(row['family']) + '_')}={_fmt(v)}" for k, v in row["params"].items()
                           if k != "family")
        table.add_row(str(row["number"]), f"{row['value']:.4f}", row["family"] or "-", f"{row['params_count'] or 0:,}",
                      str(row["epochs_run"]), f"{row['train_seconds'] or 0:.1f}", params)
    out.print(f"top {len(detail['top'])}:")
    out.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
