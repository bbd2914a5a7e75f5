"""What every dashboard page shares: the reader per storage, charts, number formats, choosing a study."""

from __future__ import annotations

from typing import Any

import streamlit as st

from digitune.dashboard._data import StudyData
from digitune.dashboard._reader import Reader


PAGES = ("Studies", "Study", "Trial", "Compare", "Queue", "Launch")
REFRESH_CHOICES = (2, 5, 10, 30)
PARALLEL_TRIALS = 2000  # the parallel-coordinate plot draws at most this many complete trials
PLOTLY_CONFIG = {"displaylogo": False}
MAX_STUDY_FILE_BYTES = 256 * 1024  # an uploaded study file (TOML) is a few hundred bytes


@st.cache_resource(show_spinner=False)
def get_reader(url: str) -> Reader:
    """One reader (and trial cache) per storage, shared by every browser session."""
    return Reader.open(url)


def chart(fig, key: str | None = None) -> None:
    st.plotly_chart(fig, config=PLOTLY_CONFIG, key=key)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def choose_study(reader: Reader, label: str = "Study") -> StudyData | None:
    names = reader.study_names()
    if not names:
        st.info("No studies yet in this storage. Start one with `digitune run studies/quickstart.toml`.")
        return None
    name = st.selectbox(label, names, key="study", bind="query-params")
    try:
        return reader.study(name)
    except KeyError:
        st.warning(f"Study {name!r} is gone (deleted meanwhile?).")
        return None


def chart_or_message(fig, message: str | None, key: str | None = None) -> None:
    if fig is not None:
        chart(fig, key=key)
    else:
        st.info(message)


def running_table(running: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{
        **({"study": r["study"]} if "study" in r else {}),
        "trial": r["number"], "family": r["family"], "epoch": r["epoch"], "last value": r["last_value"],
        "started": r["started"].isoformat(timespec="seconds") if r["started"] else None,
        "worker": "alive" if r["alive"] else "no recent heartbeat",
    } for r in running]
