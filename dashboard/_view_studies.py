"""The Studies page (every study, what is running) and the Compare page (studies side by side)."""

from __future__ import annotations


import streamlit as st

from digitune.dashboard._reader import Reader
from digitune.dashboard._records import compare_rows
from digitune.dashboard._details import compare_figure

from digitune.dashboard._views import chart, running_table


# --------------------------------------------------------------------------- Studies


def studies_page(reader: Reader) -> None:
    st.title("Studies")
    st.caption(f"Storage: `{reader.display_url}`")
    rows = reader.studies()
    if not rows:
        st.info("No studies yet in this storage. Start one with `digitune run studies/quickstart.toml` "
                "(or pass `--storage` to open another database).")
        return
    running = [dict(study=row["name"], **r) for row in rows for r in row["running"]]
    cols = st.columns(4)
    cols[0].metric("studies", len(rows))
    cols[1].metric("trials", sum(r["n_trials"] for r in rows))
    cols[2].metric("running trials", len(running))
    cols[3].metric("studies with workers now", sum(r["running_now"] for r in rows))
    table = [{
        "study": r["name"],
        "workers": "running now" if r["running_now"] else "idle",
        "objectives": ", ".join(r["objectives"]),
        "dataset": r["dataset"],
        "complete": r["trials"]["complete"],
        "pruned": r["trials"]["pruned"],
        "failed": r["trials"]["fail"],
        "running": r["trials"]["running"],
        "waiting": r["trials"]["waiting"],
        "best value": r["best_value"],
        "best trial": r["best_trial"],
        "Pareto front": r["pareto_size"],
        "last activity": r["last_activity"],
    } for r in rows]
    st.dataframe(table, hide_index=True, column_config={
        "best value": st.column_config.NumberColumn(format="%.4f"),
    })
    if running:
        st.subheader("Running now")
        st.dataframe(running_table(running), hide_index=True)


# --------------------------------------------------------------------------- Compare


def compare_page(reader: Reader) -> None:
    st.title("Compare studies")
    names = reader.study_names()
    if len(names) < 2:
        st.info("Comparing needs two or more studies; this storage has "
                f"{len(names) if names else 'none yet'}.")
        return
    chosen = st.multiselect("Studies", names, default=names[:min(3, len(names))], key="compare")
    if len(chosen) < 2:
        st.info("Select two or more studies.")
        return
    studies = [reader.study(name) for name in chosen]
    chart(compare_figure(studies), key="compare_history")
    st.dataframe(compare_rows(studies), hide_index=True, column_config={
        "best value": st.column_config.NumberColumn(format="%.4f"),
        "best accuracy": st.column_config.NumberColumn(format="%.4f"),
    })
