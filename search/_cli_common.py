"""What every ``digitune`` command shares: the app, consoles, options and error handling."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

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
ArtifactsOption = Annotated[Optional[str], typer.Option(
    "--artifacts", help="Folder for saved models (default $DIGITUNE_ARTIFACTS, else beside a SQLite "
                        "database, else studies/artifacts).")]
MixedPrecisionOption = Annotated[bool, typer.Option(
    "--mixed-precision", help="Train in mixed float16 precision (for GPUs with tensor cores).")]
RecycleOption = Annotated[int, typer.Option(
    "--recycle-after", min=0, help="Restart each worker process after this many trials, for fresh "
                                   "processes (0: never; memory stays flat without it).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
WorkersOption = Annotated[Optional[int], typer.Option(
    "--workers", min=1, help="Processes on this machine, sharing its cores (default $DIGITUNE_WORKERS, else one "
                             "single-thread worker per core, up to 8; one worker where a GPU is found).")]
GpusOption = Annotated[Optional[str], typer.Option(
    "--gpus", help="all, none or GPU indices like 0,1: processes per GPU (CUDA_VISIBLE_DEVICES set).")]
TrialsPerGpuOption = Annotated[int, typer.Option(
    "--trials-per-gpu", min=1, help="Processes (trials at a time) per GPU with --gpus.")]


def user_errors(func: Callable) -> Callable:
    """Turn digitune's user errors into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from models import ConfigError, DataError

        from search import NoModelError, SpecError, StorageError, StudyNotFoundError
        from search._workers import WorkerLayoutError

        try:
            return func(*args, **kwargs)
        except (SpecError, DataError, ConfigError, StorageError, StudyNotFoundError, NoModelError,
                WorkerLayoutError) as exc:
            err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def setup_logging() -> None:
    import optuna

    # digitune logs one line per trial, failures with their reason; Optuna's own lines would repeat them.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes: every new model retraces
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


def storage_from(url: str | None):
    from search import open_storage, resolve_storage_url

    return open_storage(resolve_storage_url(url))
