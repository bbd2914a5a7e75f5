"""What every ``digitune`` command shares: the app, consoles, options and error handling."""

from __future__ import annotations

import functools
import logging
import json
import sys
from typing import Annotated, Any, Callable, Collection, Iterable, Optional, Sequence

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from typer.core import TyperGroup

from ._click_private import click_errors

# Piped output gets wide lines rather than Rich's 80-column default.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)


def print_json(data: Any, *, default: Callable[[Any], Any] | None = None) -> None:
    """A command's ``--json`` output on stdout: ``data`` as JSON (``default`` for what JSON has no type for)."""
    out.print_json(json.dumps(data, default=default))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
                right: Collection[str] = ()) -> None:
    """A command's table on stdout: plain (no box, bold header) or, with ``title``, boxed under it.

    ``right`` names the columns aligned right; cells are strings or rich ``Text``.
    """
    table = Table(box=None, header_style="bold") if title is None else Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def print_error(message: str) -> None:
    """``error: MESSAGE`` as one line on stderr (no markup, no wrapping)."""
    err.print(f"error: {' '.join(str(message).split())}", markup=False, highlight=False, soft_wrap=True)


class OneLineErrors(TyperGroup):
    """The ``digitune`` group: a usage error (bad option, value, argument or command) is one line, exit 2.

    Click's own handling prints the usage and a boxed panel; this runs the command in
    click's non-standalone mode and reports what it raises. ``--help`` still exits 0.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: ANN001
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # `digitune` alone: its help, as click prints it
            if exc.format_message():
                exc.show()
            sys.exit(exc.exit_code)
        except click_errors.UsageError as exc:
            what = exc.format_message().strip().rstrip(".")
            print_error(f"{what[:1].lower()}{what[1:]}; see '{self._command_path(exc, args)} --help'")
            sys.exit(2)
        except click_errors.ClickException as exc:
            print_error(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("aborted", markup=False, highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def _command_path(self, exc, args) -> str:  # noqa: ANN001
        """``digitune COMMAND`` of a usage error; click leaves some errors (an option's missing value) without it."""
        if exc.ctx is not None:
            return exc.ctx.command_path
        given = list(sys.argv[1:] if args is None else args)
        command = next((a for a in given if a in self.commands), None)
        return f"{self.name or 'digitune'} {command}" if command else self.name or "digitune"


app = typer.Typer(
    name="digitune",
    help="Hyperparameter search for Keras digit classifiers, persisted as Optuna studies.",
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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
    "--workers", min=1, help="Processes on this machine, sharing its cores (default $DIGITUNE_WORKERS, else for run "
                             "the study file's workers, else one single-thread worker per core, up to 8; one "
                             "worker where a GPU is found).")]
GpusOption = Annotated[Optional[str], typer.Option(
    "--gpus", help="all, none or GPU indices like 0,1: processes per GPU (CUDA_VISIBLE_DEVICES set).")]
TrialsPerGpuOption = Annotated[int, typer.Option(
    "--trials-per-gpu", min=1, help="Processes (trials at a time) per GPU with --gpus.")]


def user_errors(func: Callable) -> Callable:
    """Turn digitune's user errors into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from digitune.models import ConfigError, DataError

        from .. import NoModelError, SpecError, StorageError, StudyNotFoundError
        from ..service import WorkerLayoutError

        try:
            return func(*args, **kwargs)
        except (SpecError, DataError, ConfigError, StorageError, StudyNotFoundError, NoModelError,
                WorkerLayoutError) as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None
        except Exception as exc:  # a damaged or full database surfaces from whichever query meets it
            problem = storage_problem(exc, kwargs.get("storage"))
            if problem is None:
                raise
            print_error(problem)
            raise typer.Exit(2) from None

    return wrapper


# What SQLite and PostgreSQL say of a damaged database or a full disk (lower case), and what to do about it.
_DAMAGED = ("file is not a database", "database disk image is malformed", "database corruption")
_FULL = ("database or disk is full", "disk i/o error", "no space left on device", "could not extend file",
         "disk quota exceeded")
_READ_ONLY = ("attempt to write a readonly database", "readonly database", "read-only file system",
              "read-only transaction")


def storage_problem(exc: BaseException, storage: str | None) -> str | None:
    """The one-line message for a storage whose database is damaged or cannot grow; None for anything else."""
    import sqlite3

    from .. import redact, resolve_storage_url

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # the driver's error lies under SQLAlchemy's and Optuna's
        seen.add(id(exc))
        if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg"):
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            shown = redact(resolve_storage_url(storage))
            if any(text in reason.lower() for text in _DAMAGED):
                rescue = ", or save what is readable with `sqlite3 FILE .recover | sqlite3 NEW.db` and use NEW.db" \
                    if shown.startswith("sqlite") else ""
                return f"storage {shown} is damaged ({reason}); restore the database from a backup{rescue}"
            if any(text in reason.lower() for text in _FULL):
                return (f"storage {shown} cannot be written ({reason}); free space on its disk (or move the "
                        f"database elsewhere), then run the command again")
            if any(text in reason.lower() for text in _READ_ONLY):
                return (f"storage {shown} cannot be written ({reason}); this user needs write access to the "
                        f"database (for SQLite, to its file and its folder), or give another --storage")
        exc = exc.__cause__ or exc.__context__
    return None


def results_storage_url(storage: str | None) -> str:
    """The storage URL of a command that stores trials; a SQLite database in memory is refused (lost at exit)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from .. import StorageError, resolve_storage_url

    url = resolve_storage_url(storage)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url  # open_storage says what is wrong with it
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and (
            database in ("", ":memory:") or database.startswith("file::memory:") or parsed.query.get("mode") == "memory"):
        raise StorageError(f"storage {url} is a database in memory: its trials would be lost when this command "
                           f"ends (and no other worker could join it); give a file, e.g. "
                           f"--storage sqlite:///studies/digitune.db")
    return url


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


def storage_from(url: str | None, *, read_only: bool = False):
    """The storage for ``--storage``; ``read_only`` for commands that must never create or change a database."""
    from .. import open_storage, read_storage, resolve_storage_url

    return read_storage(url) if read_only else open_storage(resolve_storage_url(url))
