"""The ``run`` and ``worker`` commands: this process as the first worker, others beside it, under a progress bar."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (ArtifactsOption, GpusOption, MixedPrecisionOption, RecycleOption, StorageOption,
                      TrialsPerGpuOption, WorkersOption, err, results_storage_url, setup_logging, storage_from,
                      user_errors)
from .._deadline import deadline_after


@user_errors
def run(
    study_file: Annotated[Path, typer.Argument(help="Study definition (TOML), e.g. studies/quickstart.toml.")],
    trials: Annotated[Optional[int], typer.Option(
        "--trials", min=1, help="Finished trials the study should hold (default: the file's study.trials).")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", min=1, help=(
        "At this many seconds, running trials stop at their next epoch end and no new trial starts."))] = None,
    storage: StorageOption = None,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", help="Data source instead of the file's: digits, fashion-mnist, mnist or a path.")] = None,
    sampler: Annotated[Optional[str], typer.Option(
        "--sampler", help="Sampler instead of the file's: tpe, random, grid, qmc, cmaes, gp, nsga2.")] = None,
    pruner: Annotated[Optional[str], typer.Option(
        "--pruner", help="Pruner instead of the file's: hyperband, median, successive-halving, percentile, "
                         "threshold, none.")] = None,
    baselines: Annotated[Optional[str], typer.Option(
        "--baselines", help="'tutorial' runs the seven tutorial presets first, tagged as baselines.")] = None,
    start: Annotated[Optional[str], typer.Option(
        "--start", help="A new study's first trials: 'defaults' (a known-good model per family from the space) "
                        "or 'sampler'.")] = None,
    warm_start: Annotated[Optional[str], typer.Option(
        "--warm-start", help="A new study first runs the best configurations of this earlier study (same "
                             "storage), moved into its space.")] = None,
    artifacts: ArtifactsOption = None,
    workers: WorkersOption = None,
    gpus: GpusOption = None,
    trials_per_gpu: TrialsPerGpuOption = 1,
    mixed_precision: MixedPrecisionOption = False,
    recycle_after: RecycleOption = 0,
) -> None:
    """Run (or continue) the study in STUDY_FILE until it holds --trials finished trials.

    On a CPU machine it runs one single-thread worker per core by default: this process and
    worker processes beside it, all on the same study.
    """
    from .. import load_spec
    from .._overrides import with_overrides

    setup_logging()
    storage = results_storage_url(storage)
    spec = with_overrides(load_spec(study_file), source=str(study_file), dataset=dataset, sampler=sampler,
                          pruner=pruner, baselines=baselines, start=start, warm_start=warm_start)
    deadline = deadline_after(timeout or spec.timeout)  # one for every worker, from now
    from ..service import plan_workers

    slots = plan_workers(workers, gpus, trials_per_gpu, study=spec.workers)
    if (gpus and gpus != "none") or recycle_after:  # every worker in a process of its own
        _run_with_workers(spec, storage, trials or spec.trials, deadline, artifacts=artifacts, slots=slots,
                          mixed_precision=mixed_precision, recycle_after=recycle_after)
    else:  # this process is the first worker; any others run beside it
        _run_with_progress(spec, storage, trials or spec.trials, deadline, artifacts=artifacts,
                           mixed_precision=mixed_precision, slots=slots)


@user_errors
def worker(
    name: Annotated[str, typer.Argument(help="Name of an existing study to join.")],
    trials: Annotated[Optional[int], typer.Option(
        "--trials", min=1, help="Finished trials the study should hold (default: its stored study.trials).")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", min=1, help=(
        "At this many seconds, running trials stop at their next epoch end and no new trial starts."))] = None,
    storage: StorageOption = None,
    artifacts: ArtifactsOption = None,
    mixed_precision: MixedPrecisionOption = False,
    recycle_after: RecycleOption = 0,
    no_progress: Annotated[bool, typer.Option("--no-progress", hidden=True)] = False,
    deadline: Annotated[Optional[float], typer.Option("--deadline", hidden=True)] = None,  # the parent's, time.time()
) -> None:
    """Join an existing study from its stored spec; several workers may run on one study at once."""
    from .. import load_study, stored_spec
    from ..storage._reconnect import open_reconnecting
    from ..service import child_process

    setup_logging()
    storage = results_storage_url(storage)
    with child_process() as spawned:  # one `digitune run` started: the database may be restarting right now
        store = open_reconnecting(storage) if spawned else storage_from(storage)
        spec = stored_spec(load_study(name, store))
        deadline = deadline_after(timeout or spec.timeout, given=deadline)  # the parent's --deadline wins
        _run_with_progress(spec, storage, trials or spec.trials, deadline, seed_offset=os.getpid(),
                           artifacts=artifacts, mixed_precision=mixed_precision, show_progress=not no_progress,
                           recycle_after=recycle_after, store=store)


def _run_with_workers(spec, storage: str | None, target: int, deadline: float | None, *, artifacts: str | None,
                      slots, mixed_precision: bool, recycle_after: int = 0) -> None:
    """Create or check the study here, then run it in worker processes while a progress bar watches."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from digitune.models import load_dataset
    from .. import count_finished, open_study, redact, resolve_storage_url
    from ..service import Team, describe_layout, worker_args

    url = resolve_storage_url(storage)
    store = storage_from(url)
    data = load_dataset(spec.data.source, **spec.data.load_kwargs())
    study = open_study(spec, store, data)
    already = count_finished(study)
    err.print(f"study {spec.name!r} in {redact(url)}: {already} finished trials, target {target}; "
              f"{len(slots)} workers ({describe_layout(slots)})", highlight=False)
    team = Team(slots, url, worker_args(spec.name, trials=target, deadline=deadline, artifacts=artifacts,
                                        mixed_precision=mixed_precision, recycle_after=recycle_after))
    team.start()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("best {task.fields[best]}"), TimeElapsedColumn(), console=err)
    task = progress.add_task("trials", total=target, completed=min(already, target), best=best_text(study))

    def refresh() -> None:
        progress.update(task, completed=min(count_finished(study), target), best=best_text(study))

    try:
        with progress:  # a worker that ran its --recycle-after trials is replaced by a fresh process
            team.supervise(on_poll=refresh)
            refresh()
    except KeyboardInterrupt as exc:
        _interrupted(exc, study, spec.name)
    err.print(f"study {spec.name!r}: {count_finished(study)} finished trials, best {best_text(study)}; "
              f"worker exit codes {team.codes}, {team.recycled} recycled. "
              f"See: digitune show {spec.name}", highlight=False)
    code = team.exit_code()
    if code:
        raise typer.Exit(code)


def _interrupted(exc: KeyboardInterrupt, study, name: str) -> None:
    """Say what an interrupted run left behind, without waiting for a database that is away; exit 130 or 143."""
    from .. import count_finished
    from ..storage._reconnect import passthrough
    from ..service import interrupted_exit

    signal_name = str(exc) or "SIGINT"
    try:
        with passthrough():  # asked once: Ctrl-C while waiting for the database must not wait again
            left = f"the running trial is marked failed and {count_finished(study)} finished trials are stored"
    except Exception:  # the database is away
        left = ("the database is unreachable: the running trial is failed after the heartbeat grace period, "
                "the finished trials are stored")
    err.print(f"interrupted ({signal_name}): {left}; run the same command again to continue study {name!r}",
              highlight=False)
    raise typer.Exit(interrupted_exit(signal_name)) from None


def _run_with_progress(spec, storage: str | None, target: int, deadline: float | None, seed_offset: int = 0,
                       artifacts: str | None = None, mixed_precision: bool = False,
                       show_progress: bool = True, recycle_after: int = 0, slots=(), store=None) -> None:
    """Run the study in this process; with several ``slots``, this process is the first worker and
    the others run in worker processes started once the study exists."""
    from digitune.models import load_dataset
    from .. import ModelKeeper, artifact_dir, count_finished, open_study, redact, resolve_storage_url
    from ..service import Team, describe_layout, prepare_worker, worker_args

    if len(slots) > 1:  # this worker's share of the cores (before the backend starts its thread pools)
        os.environ.update({k: v for k, v in slots[0].env().items() if k != "CUDA_VISIBLE_DEVICES"})
    prepare_worker(mixed_precision=mixed_precision)
    url = resolve_storage_url(storage)
    store = store if store is not None else storage_from(url)
    data = load_dataset(spec.data.source, **spec.data.load_kwargs())
    others = Team(slots[1:], url, worker_args(spec.name, trials=target, deadline=deadline, artifacts=artifacts,
                                              mixed_precision=mixed_precision))
    with others.stopping():  # the others end with this process
        study = open_study(spec, store, data, seed_offset=seed_offset)
        if count_finished(study) < target:  # they import the backend while this process writes its first lines
            others.start()
        info = data.info
        err.print(f"data: {info.name} {info.image_shape[0]}x{info.image_shape[1]}, {info.n_train} train / "
                  f"{info.n_val} validation / {info.n_test} test ({info.source})", highlight=False)
        layout = f"; {len(slots)} workers (this process and {len(slots) - 1} more: {describe_layout(slots)})" \
            if len(slots) > 1 else ""
        err.print(f"study {spec.name!r} in {redact(url)}: {count_finished(study)} finished trials, target "
                  f"{target}{layout}", highlight=False)
        keeper = ModelKeeper(artifact_dir(url, artifacts), spec.save_models)
        _optimize_here(spec, store, study, data, others, target=target, deadline=deadline,
                       keeper=keeper, show_progress=show_progress, recycle_after=recycle_after)


def _optimize_here(spec, store, study, data, others, *, target: int, deadline: float | None,
                   keeper, show_progress: bool, recycle_after: int) -> None:
    """``run_study`` in this process under a progress bar, then wait for the other workers (a ``Team``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from .. import FINISHED, count_finished
    from .._deadline import monotonic_deadline
    from ..loop import run_trials
    from ..service import RECYCLE_EXIT

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
        console=err, transient=False, disable=not show_progress,
    )
    task = progress.add_task("trials", total=target, completed=min(count_finished(study), target),
                             best=best_text(study))

    def refresh() -> None:  # every worker's finished trials, as stored
        progress.update(task, completed=min(count_finished(study), target), best=best_text(study))

    def on_trial(study, trial) -> None:
        if others.procs:  # the other workers' trials count too
            refresh()
            return
        if trial.state in FINISHED:
            progress.advance(task)
        progress.update(task, best=best_text(study))

    try:
        with progress, others.stopping():
            ends = monotonic_deadline(None, deadline)  # run and worker made it from --timeout or the spec
            summary = run_trials(study, spec, data, store, n_trials=target, ends=ends, on_trial=on_trial,
                                 keeper=keeper, max_trials=recycle_after or None)
            others.supervise(on_poll=refresh)
    except KeyboardInterrupt as exc:
        _interrupted(exc, study, spec.name)
    more = f"; {len(others.procs)} more worker(s), exit codes {others.codes}" if others.procs else ""
    err.print(f"study {spec.name!r}: {count_finished(study) if others.procs else summary.finished} finished trials "
              f"({summary.ran} run here, {summary.failed} failed{more}), best {best_text(summary.study)}. "
              f"See: digitune show {spec.name}", highlight=False)
    if summary.recycled:
        raise typer.Exit(RECYCLE_EXIT)
    code = others.exit_code()
    if code:
        raise typer.Exit(code)


def best_text(study) -> str:
    if len(study.directions) > 1:
        return f"Pareto front of {len(study.best_trials)}"
    try:
        return f"{study.best_value:.4f}"
    except ValueError:
        return "-"
