"""digitune's dashboard: the router over its pages (``_view_*.py``), which draw ``_data``'s records as ``_figures``.

Run: ``digitune dashboard [--storage URL]``, or ``streamlit run dashboard/app.py -- --storage URL``.
The storage is read; only submit, stop and resume (Launch and Queue pages) write. Pages: Studies,
Study, Trial, Compare, Queue, Launch (sidebar, or
``?page=Study&study=NAME&trial=3`` in the URL). With auto-refresh on, the data-dependent
part of each page reruns every few seconds on its own (``st.fragment``), reading only the
trials that changed. With ``$DIGITUNE_DASHBOARD_TOKEN`` set, the page asks for that token before it
shows anything.
"""

from __future__ import annotations

import os

# Before anything imports TensorFlow (the Trial page builds a model to list its layers).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hmac  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import streamlit as st  # noqa: E402

from digitune.dashboard._reader import storage_url  # noqa: E402
from digitune.dashboard._view_queue import launch_page, queue_page  # noqa: E402
from digitune.dashboard._view_studies import compare_page, studies_page  # noqa: E402
from digitune.dashboard._view_study import study_page  # noqa: E402
from digitune.dashboard._view_trial import trial_page  # noqa: E402
from digitune.dashboard._views import PAGES, REFRESH_CHOICES, get_reader  # noqa: E402
from digitune.search import StorageError  # noqa: E402
from digitune.search._env import TOKEN_ENV  # noqa: E402


RENDER = {"Studies": studies_page, "Study": study_page, "Trial": trial_page, "Compare": compare_page,
          "Queue": queue_page, "Launch": launch_page}


def signed_in() -> bool:
    """True when no token is set (``$DIGITUNE_DASHBOARD_TOKEN``) or this session gave it; else asks for it.

    Nothing else of the page, the storage's name included, is shown before the token is given.
    """
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token or st.session_state.get("signed_in"):
        return True
    st.title("digitune")
    given = st.text_input("Token", type="password", key="sign_in_token",
                          help=f"The dashboard's token, as its server has it in ${TOKEN_ENV}.")
    if given:
        if hmac.compare_digest(given.strip().encode(), token.encode()):
            st.session_state["signed_in"] = True
            st.rerun()
        time.sleep(1)  # a guess a second per session
        st.error("That is not the dashboard's token.")
    else:
        st.info("This dashboard asks for a token: enter the one its server was started with.")
    return False


def main() -> None:
    st.set_page_config(page_title="digitune", layout="wide")
    if not signed_in():
        return
    try:
        reader = get_reader(storage_url(sys.argv[1:]))
    except StorageError as exc:
        st.error(f"Cannot open the study storage: {exc}")
        return
    with st.sidebar:
        st.header("digitune")
        page = st.radio("Page", PAGES, key="page", bind="query-params")
        auto = st.toggle("auto-refresh", value=True, key="auto_refresh")
        every = st.select_slider("every (seconds)", REFRESH_CHOICES, value=5, key="refresh_every",
                                 disabled=not auto)
        st.caption(f"Storage: `{reader.display_url}`")
        st.caption("Read-only, except the Launch and Queue pages' buttons (submit, stop, resume).")
    body = st.fragment(run_every=every if auto else None)(RENDER[page])
    body(reader)


main()
