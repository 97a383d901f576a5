"""Widgets the pages share: the sidebar's page names, the run picker, one input per strategy setting, chart downloads,
the error box, and column headers in words."""
from __future__ import annotations

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from promptlab import charts
from promptlab.dashboard.readers import runs_table
from promptlab.dashboard.settings import remember, remembered
from promptlab.errors import PromptlabError

# One name per page, in the sidebar as in each page's title. Streamlit's own list would call the home page "app" (its
# file's name: the file is fixed) while a pages/ folder is there; st.navigation could rename it, but with a pages/
# folder Streamlit only switches to it once the home page has run, so a first visit straight to /Runs still said
# "app". Its list is hidden (client.showSidebarNavigation) and this one drawn instead.
PAGES = (("app.py", "promptlab"), ("pages/1_Datasets.py", "Datasets"),
         ("pages/2_Prompts_and_proposers.py", "Prompts and proposers"), ("pages/3_Runs.py", "Runs"),
         ("pages/4_Results.py", "Results"))


# Column headers in words for the tables a person reads; the stored names stay the store's and the CLI's JSON keys.
def sidebar_nav() -> None:
    """The sidebar's links to every page, each by its one name. A page run on its own (AppTest, `streamlit run
    pages/X.py`) has no app around it to link to, and shows none."""
    for path, label in PAGES:
        try:
            st.sidebar.page_link(path, label=label)
        except StreamlitAPIException:
            return


def error_box(exc: Exception) -> None:
    """A user-facing error: the message, never a traceback."""
    st.error(str(exc) if isinstance(exc, PromptlabError) else f"Something went wrong: {type(exc).__name__}: {exc}")


def chart_exports(fig, stem: str, key: str) -> None:
    """Download buttons for a chart: interactive HTML at once, PNG rendered on request (it takes seconds)."""
    c1, c2, c3 = st.columns([1, 1, 3])
    c1.download_button("HTML", fig.to_html(include_plotlyjs=True), file_name=f"{stem}.html", mime="text/html",
                       key=f"{key}.html", help="interactive chart, opens in any browser offline")
    png_key = f"promptlab.png.{key}"
    if c2.button("Render PNG", key=f"{key}.render"):
        try:
            st.session_state[png_key] = charts.to_png(fig)
        except RuntimeError as exc:
            st.session_state[png_key] = None
            c3.warning(str(exc))
    if st.session_state.get(png_key):
        c3.download_button("Download PNG", st.session_state[png_key], file_name=f"{stem}.png", mime="image/png",
                           key=f"{key}.png")


def pick_grid(table: pd.DataFrame, label: str, key: str, members: str) -> str:
    """A selector over studies or groups (store.list_studies): id, dataset and how many of its `members` finished."""
    by_id = table.set_index("id")
    return st.selectbox(label, table["id"].tolist(), key=key,
                        format_func=lambda i: f"{i} · {by_id.loc[i, 'dataset']} · "
                                              f"{by_id.loc[i, 'finished']}/{by_id.loc[i, 'runs']} {members} finished")


def pick_run(key: str, empty_message: str) -> tuple[str, pd.DataFrame, dict[str, str]]:
    """A selector over optimization runs (newest first), remembering the choice across pages.

    Returns (run id, the optimization runs, their display labels); stops the page with
    `empty_message` when there are none.
    """
    table = runs_table()
    opt = table[table["kind"] == "optimize"] if len(table) else table
    if not len(opt):
        st.info(empty_message)
        st.stop()
    ids = opt["id"].tolist()
    # No status in the label: a keyed selectbox keeps showing a label that changed (streamlit #13788), so a
    # live status here would go stale; the page shows the status next to it instead.
    labels = {r.id: f"{r.id} · {r.dataset} · {pd.Timestamp(r.created_at):%Y-%m-%d %H:%M}" for r in opt.itertuples()}
    current = remembered("run", ids[0])
    run_id = st.selectbox("Run", ids, index=ids.index(current) if current in ids else 0, format_func=labels.get, key=key)
    remember("run", run_id)
    return run_id, opt, labels


def setting_inputs(settings: dict, model_names: list[str], key_prefix: str = "runs", columns: int = 4,
                   defaults: dict | None = None) -> dict:
    """One widget per strategy setting, built from its declaration (label, help, default, choices, limits);
    returns {name: value}. The values are checked by make_config against the same declarations."""
    out = {}
    cols = st.columns(columns)
    for i, s in enumerate(settings.values()):
        col = cols[i % columns]
        key = f"{key_prefix}.{s.ui_key}"
        label = s.label or s.name.replace("_", " ")
        default = (defaults or {}).get(s.name, s.default)
        if s.type == "model":
            names = ["(the first proposer)"] + model_names
            pick = col.selectbox(label, names, key=key, help=s.help)
            out[s.name] = None if pick == names[0] else pick
        elif s.type == "choice":
            out[s.name] = col.selectbox(label, list(s.choices), index=list(s.choices).index(default), key=key, help=s.help)
        elif s.type == "choices":
            out[s.name] = col.multiselect(label, list(s.choices), default=list(default), key=key, help=s.help)
        elif s.type == "demos":
            options = ["none", "per-label", 1, 2, 4, 8]
            out[s.name] = col.selectbox(label, options, index=options.index(default) if default in options else 0,
                                        key=key, help=s.help)
        elif s.type == "bool":
            out[s.name] = col.checkbox(label, value=bool(default), key=key, help=s.help)
        elif s.type == "int":
            value = 0 if default is None else int(default)
            lo = int(s.low) if s.low is not None else None
            out[s.name] = int(col.number_input(label, min_value=lo, max_value=int(s.high) if s.high is not None else None,
                                               value=value, step=1, key=key, help=s.help))
        elif s.type == "float":
            out[s.name] = float(col.number_input(label, min_value=s.low, max_value=s.high, value=float(default),
                                                 step=0.05, key=key, help=s.help))
        else:
            out[s.name] = col.text_input(label, str(default), key=key, help=s.help)
    return out
