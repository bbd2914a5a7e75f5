"""The team workflow: ``submit``, ``queue``, ``stop``, ``resume`` and ``agent`` (over ``search.service._queue``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (
    ArtifactsOption,
    GpusOption,
    JsonOption,
    MixedPrecisionOption,
    RecycleOption,
    StorageOption,
    TrialsPerGpuOption,
    WorkersOption,
    err,
    out,
    print_json,
    print_table,
    setup_logging,
    storage_from,
    user_errors,
)

NameArgument = Annotated[str, typer.Argument(help="Study name, as `digitune queue` lists it.")]


@user_errors
def submit(
    study_file: Annotated[Path, typer.Argument(help="Study definition (TOML), e.g. studies/digits.toml.")],
    storage: StorageOption = None,
    priority: Annotated[int, typer.Option(
        "--priority", help="Agents take studies with a higher priority first (default 0).")] = 0,
    trials: Annotated[Optional[int], typer.Option(
        "--trials", min=1, help="Budget: finished trials (default: the file's study.trials).")] = None,
    timeout: Annotated[Optional[float], typer.Option(
        "--timeout", min=1, help="Budget: at this many seconds from when the first agent starts it, running trials "
                                 "stop at their next epoch end and no new trial starts (default: the file's "
                                 "study.timeout, else none).")] = None,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", help="Data source instead of the file's: digits, fashion-mnist, mnist or a path that "
                          "exists on the agents' machines.")] = None,
) -> None:
    """Store a study and its spec in the database for agents to run; returns at once, trains nothing here."""
    from .. import load_spec, redact, resolve_storage_url
    from .._overrides import with_overrides
    from ..service._queue import submit as submit_study

    setup_logging()
    spec = with_overrides(load_spec(study_file), source=str(study_file), dataset=dataset, trials=trials,
                          timeout=timeout)
    url = resolve_storage_url(storage)
    entry = submit_study(spec, storage_from(url), priority=priority)
    budget = f"{entry.trials} trials" + (f" or {entry.timeout:g} s" if entry.timeout else "")
    out.print(f"submitted study {entry.name!r} to {redact(url)}: {entry.state}, priority {entry.priority}, "
              f"budget {budget} ({entry.finished} finished so far). Agents pick it up: "
              f"digitune agent --storage {redact(url)}", highlight=False)


@user_errors
def show_queue(
    storage: StorageOption = None,
    as_json: JsonOption = False,
    everything: Annotated[bool, typer.Option(
        "--all", help="Also list agents that exited or were lost more than a day ago.")] = False,
) -> None:
    """List submitted studies (state, budget used, best value, agents on them) and the agents."""
    from ..service._queue import list_agents, queue_entries

    store = storage_from(storage, read_only=True)
    entries = queue_entries(store)
    agents = list_agents(store, everything=everything)
    if as_json:
        print_json({"studies": [e.to_dict() for e in entries], "agents": agents})
        return
    if not entries:
        out.print("no studies submitted; submit one with: digitune submit STUDY.toml", highlight=False)
    else:
        print_table(("priority", "study", "state", "trials", "time", "best", "agents", "note"),
                    (_entry_cells(e, agents) for e in entries), title="queue", right=("priority", "trials", "time"))
    if not agents:
        out.print("no agents registered; start one with: digitune agent", highlight=False)
        return
    print_table(("agent", "status", "devices", "study", "trial", "trials run", "last heartbeat", "refused"),
                (_agent_cells(a) for a in agents), title="agents")


def _entry_cells(e, agents: list[dict]) -> tuple[str, ...]:
    """A queue row: one submitted study, with the agents working on it."""
    on_it = [a["id"] for a in agents if a.get("study") == e.name and a["status"] == "working"]
    used = e.seconds_used()
    time_text = "-" if used is None else f"{used:.0f}" + (f"/{e.timeout:g} s" if e.timeout else " s")
    best = "-" if e.best is None else f"{e.best:.4f}"
    note = e.reason or (f"{e.running} running" if e.running else "")
    return (str(e.priority), e.name, e.state, f"{e.finished}/{e.trials}", time_text, best, ", ".join(on_it) or "-",
            note)


def _agent_cells(a: dict) -> tuple[str, ...]:
    refused = "; ".join(f"{k}: {v}" for k, v in (a.get("refused") or {}).items())
    return (a["id"], a["status"], a.get("devices") or "-", a.get("study") or "-",
            "-" if a.get("trial") is None else str(a["trial"]), str(a.get("trials_run", 0)),
            f"{a['heartbeat_age']:.0f} s ago", refused or "-")


@user_errors
def stop(name: NameArgument, storage: StorageOption = None) -> None:
    """Stop a submitted study: agents leave it after their running trial."""
    from ..service._queue import stop as stop_study

    old, new = stop_study(storage_from(storage), name)
    if old == new:
        out.print(f"study {name!r} is {old}; nothing to stop", highlight=False)
    else:
        out.print(f"study {name!r}: {old} -> stopped; agents leave it at their next trial boundary. "
                  f"Continue it with: digitune resume {name}", highlight=False)


@user_errors
def resume(name: NameArgument, storage: StorageOption = None) -> None:
    """Queue a stopped or failed study again (a time budget starts afresh)."""
    from ..service._queue import resume as resume_study

    old, new = resume_study(storage_from(storage), name)
    if old == new:
        out.print(f"study {name!r} is already {old}", highlight=False)
    else:
        out.print(f"study {name!r}: {old} -> queued; agents take it up by priority", highlight=False)


@user_errors
def agent(
    storage: StorageOption = None,
    workers: WorkersOption = None,
    gpus: GpusOption = None,
    trials_per_gpu: TrialsPerGpuOption = 1,
    until_idle: Annotated[bool, typer.Option(
        "--until-idle", help="Exit when no submitted study has work left, instead of waiting for more.")] = False,
    poll: Annotated[float, typer.Option(
        "--poll", min=0.1, help="Seconds between looks at the queue while there is nothing to do.")] = 5.0,
    artifacts: ArtifactsOption = None,
    mixed_precision: MixedPrecisionOption = False,
    recycle_after: RecycleOption = 0,
) -> None:
    """Work through the submitted studies, most urgent first, until stopped with Ctrl-C."""
    from ._common import results_storage_url
    from ..service import plan_workers

    setup_logging()
    url = results_storage_url(storage)
    slots = plan_workers(workers, gpus, trials_per_gpu)
    if len(slots) > 1 or (gpus and gpus != "none") or recycle_after:
        _agent_processes(url, slots=slots, until_idle=until_idle, poll=poll, artifacts=artifacts,
                         mixed_precision=mixed_precision, recycle_after=recycle_after)
        return
    _agent_here(url, until_idle=until_idle, poll=poll, artifacts=artifacts, mixed_precision=mixed_precision)


def _agent_here(url: str, *, until_idle: bool, poll: float, artifacts: str | None, mixed_precision: bool,
                recycle_after: int = 0, spawned: bool = False) -> None:
    from .. import artifact_dir
    from ..service import RECYCLE_EXIT, interrupted_exit, serve
    from ..storage._reconnect import open_reconnecting

    store = open_reconnecting(url) if spawned else storage_from(url)  # started by `digitune agent`: it may blink
    try:
        summary = serve(store, artifact_dir(url, artifacts), until_idle=until_idle, poll=poll,
                        mixed_precision=mixed_precision, recycle_after=recycle_after)
    except KeyboardInterrupt as exc:
        signal_name = str(exc) or "SIGINT"
        err.print(f"agent stopped ({signal_name}); its running trial, if any, is marked failed (interrupted) "
                  f"and its slot goes to the next agent", highlight=False)
        raise typer.Exit(interrupted_exit(signal_name)) from None
    refused = "".join(f"; refused {k}: {v}" for k, v in summary.refused.items())
    err.print(f"agent done: {summary.trials_run} trials run on {', '.join(summary.studies) or 'no study'}{refused}",
              highlight=False)
    if recycle_after and summary.trials_run >= recycle_after:
        raise typer.Exit(RECYCLE_EXIT)


def _agent_processes(url: str, *, slots, until_idle: bool, poll: float, artifacts: str | None,
                     mixed_precision: bool, recycle_after: int) -> None:
    """Run one agent process per worker slot (threads or a GPU each) and restart recycled ones."""
    from ..service import Team, agent_args, describe_layout, interrupted_exit

    team = Team(slots, url, agent_args(poll=poll, until_idle=until_idle, artifacts=artifacts,
                                       mixed_precision=mixed_precision, recycle_after=recycle_after))
    err.print(f"{len(slots)} agent processes ({describe_layout(slots)})", highlight=False)
    team.start()
    try:  # Ctrl-C or SIGTERM here goes on to the agent processes; each says how it stopped
        team.supervise()
    except KeyboardInterrupt as exc:
        raise typer.Exit(interrupted_exit(str(exc))) from None
    code = team.exit_code()  # agent processes that gave up on the database: one error: line, here
    if code:
        raise typer.Exit(code)


@user_errors
def agent_process(
    storage: StorageOption = None,
    until_idle: Annotated[bool, typer.Option("--until-idle")] = False,
    poll: Annotated[float, typer.Option("--poll")] = 5.0,
    artifacts: ArtifactsOption = None,
    mixed_precision: MixedPrecisionOption = False,
    recycle_after: RecycleOption = 0,
) -> None:
    """One agent process under `digitune agent --workers N` (exits 75 after --recycle-after trials)."""
    from .. import resolve_storage_url
    from ..service import child_process

    setup_logging()
    with child_process() as spawned:
        _agent_here(resolve_storage_url(storage), until_idle=until_idle, poll=poll, artifacts=artifacts,
                    mixed_precision=mixed_precision, recycle_after=recycle_after, spawned=spawned)
