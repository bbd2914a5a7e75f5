"""The Queue page (submitted studies and agents, stop and resume) and the Launch page (submit a study, start an agent)."""

from __future__ import annotations

from typing import Any

import streamlit as st

import tomllib

from digitune.search import PRUNERS, SAMPLERS, SpecError, StorageError, list_agents, open_storage, queue_entries, resume, spec_from_dict, stop  # noqa: E501

from digitune.dashboard._reader import Reader
from digitune.dashboard._launch import DATASETS, LocalAgent, launch_folder_problem, live_agents, start_agent, study_from_fields, submit_definition  # noqa: E501
from digitune.dashboard._queue import agent_rows, queue_figure, queue_rows

from digitune.dashboard._views import MAX_STUDY_FILE_BYTES, chart


# --------------------------------------------------------------------------- Queue and Launch


@st.cache_resource(show_spinner=False)
def _writer(url: str):
    """A storage for the few writes the dashboard makes (submit, stop, resume), separate from the reader's."""
    return open_storage(url, heartbeat=False)


@st.cache_resource
def _local_agents() -> list[LocalAgent]:
    """Agents this dashboard process started (shared by every browser session)."""
    return []


def queue_page(reader: Reader) -> None:
    st.title("Queue")
    st.caption("Studies submitted with `digitune submit` or the Launch page, and the agents (`digitune agent`) "
               "working through them, most urgent first.")
    storage = reader.opened()  # None while a SQLite file does not exist yet: nothing submitted
    entries, agents = (queue_entries(storage), list_agents(storage)) if storage is not None else ([], [])
    if not entries:
        st.info("Nothing submitted yet: `digitune submit STUDY.toml`, or the Launch page.")
    else:
        cols = st.columns(4)
        cols[0].metric("queued", sum(e.state == "queued" for e in entries))
        cols[1].metric("running", sum(e.state == "running" for e in entries))
        cols[2].metric("done", sum(e.state == "done" for e in entries))
        cols[3].metric("live agents", sum(a["status"] in ("working", "idle") for a in agents))
        chart(queue_figure(entries), key="queue_figure")
        st.dataframe(queue_rows(entries, agents), hide_index=True, key="queue_table",
                     column_config={"best value": st.column_config.NumberColumn(format="%.4f")})
        _queue_controls(_writer(reader.url or ""), entries)
    st.subheader("Agents")
    if agents:
        st.dataframe(agent_rows(agents), hide_index=True, key="agents_table")
    else:
        st.info("No agent has registered on this storage. Start one with `digitune agent`, or submit from the "
                "Launch page, which starts one here when none is running.")


def _queue_controls(storage, entries) -> None:
    """Stop or resume one submitted study: agents honour it at their next trial boundary."""
    left, right = st.columns([3, 1])
    name = left.selectbox("Study", [e.name for e in entries], key="queue_study")
    entry = next(e for e in entries if e.name == name)
    if entry.state in ("queued", "running"):
        if right.button("Stop", key="queue_stop"):
            stop(storage, name)
            st.info(f"Stopped {name!r}: agents leave it after their running trial.")
    elif right.button("Resume", key="queue_resume", disabled=entry.finished >= entry.trials):
        try:
            resume(storage, name)
        except SpecError as exc:
            st.error(str(exc))
        else:
            st.info(f"Queued {name!r} again.")


def launch_page(reader: Reader) -> None:
    st.title("Launch a study")
    st.caption("Submits the study to the queue on this storage; agents run it. When no agent is running, one is "
               "started here. Submitting, stopping and resuming are the only things the dashboard writes.")
    local = _local_agents()
    with st.container(border=True):
        name = st.text_input("Study name", value="dashboard-study", key="launch_name")
        left, right = st.columns(2)
        dataset = left.selectbox("Dataset", DATASETS, key="launch_dataset")
        trials = right.number_input("Trials", min_value=1, max_value=10_000, value=12, key="launch_trials")
        sampler = left.selectbox("Sampler", SAMPLERS, key="launch_sampler")
        pruner = right.selectbox("Pruner", PRUNERS, key="launch_pruner")
        families = left.multiselect("Families", ["mlp", "cnn"], default=["mlp", "cnn"], key="launch_families")
        priority = right.number_input("Priority (higher runs first)", value=0, step=1, key="launch_priority")
        workers = left.number_input("Agent processes, if one is started here", min_value=1, max_value=64, value=1,
                                    key="launch_workers")
        uploaded = st.file_uploader("…or a study file (TOML) instead of these fields", type=["toml"],
                                    key="launch_file")
        problem = launch_folder_problem()  # a folder others can write to: say so before anything is typed in
        if problem:
            st.error(f"Cannot launch: {problem}")
        if st.button("Launch", type="primary", key="launch_button", disabled=bool(problem)):
            try:
                if uploaded is not None:
                    definition = _uploaded_definition(uploaded)
                else:
                    definition = study_from_fields(name=name, dataset=dataset, trials=int(trials), sampler=sampler,
                                                   pruner=pruner, families=families or ["mlp"])
                entry = submit_definition(definition, reader.url or "", priority=int(priority))
                _launched(reader, entry, local, int(workers))
            except (SpecError, StorageError, tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
                st.error(f"Cannot launch: {exc}")
    _launched_progress(reader, local)


def _launched(reader: Reader, entry, local: list[LocalAgent], workers: int) -> None:
    """Say what became of a submitted study: running agents will take it, or one is started here for it."""
    message = f"Launched study {entry.name!r} ({entry.trials} trials): submitted to the queue"
    running = live_agents(reader.opened()) or [a for a in local if a.running]
    if running:
        st.success(message + f"; {len(running)} running agent(s) will pick it up.")
        return
    try:
        local.append(start_agent(reader.url or "", workers=workers))
    except OSError as exc:  # e.g. the launch folder went bad after the study file was written
        st.warning(f"{message}, but no agent could be started here: {exc}")
        return
    st.success(message + f"; no agent was running, so one was started here ({workers} process"
               f"{'es' if workers > 1 else ''}).")


def _uploaded_definition(uploaded) -> dict[str, Any]:
    """The study definition in an uploaded TOML file (``SpecError`` if it is too big or not a study)."""
    if uploaded.size > MAX_STUDY_FILE_BYTES:
        raise SpecError(f"{uploaded.name}: the study file is {uploaded.size:,} bytes; "
                        f"upload at most {MAX_STUDY_FILE_BYTES:,} bytes")
    return spec_from_dict(tomllib.loads(uploaded.getvalue().decode()), source=uploaded.name).to_dict()


def _launched_progress(reader: Reader, local: list[LocalAgent]) -> None:
    """The queue's studies with their progress, and the agents this dashboard started, with a stop button."""
    storage = reader.opened()
    entries = queue_entries(storage) if storage is not None else []
    if entries:
        st.subheader("Queue")
        for e in entries:
            st.markdown(f"**{e.name}**: {e.state}, {e.finished} of {e.trials} trials finished"
                        + (f", {e.running} running" if e.running else ""))
            st.progress(min(e.finished / e.trials, 1.0))
    for i, agent in enumerate(local):
        with st.container(border=True):
            state = "running" if agent.running else f"ended (exit code {agent.returncode})"
            st.markdown(f"**agent started here** (pid {agent.process.pid}, {agent.workers} process"
                        f"{'es' if agent.workers > 1 else ''}): {state}")
            st.code(agent.log_tail() or "(no output yet)", language=None)
            if agent.running and st.button("Stop this agent", key=f"stop_agent:{i}"):
                code = agent.stop()
                st.info(f"Stopped the agent (exit code {code}); its finished trials stay in their studies.")
