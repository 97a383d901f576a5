"""The one bridge to Streamlit: the cached store, cached readers, the job registry, the embedded default.

Pages call these and render; nothing else in promptlab imports streamlit. Long work runs in worker
threads that never call st.*: they write to the store, and pages poll the store from fragments.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import streamlit as st

from promptlab import runs
from promptlab.data import import_dataset, stored_dataset
from promptlab.errors import PromptlabError
from promptlab.local import ZOO, zoo_status
from promptlab.models import ModelSpec, make_spec, spec_from_record
from promptlab.store import Store, default_db_path

DEMO_DATASET = Path(__file__).resolve().parent.parent / "data" / "support_tickets.csv"
DEMO_REFERENCE = Path(__file__).resolve().parent.parent / "data" / "short_answers.csv"
DEFAULT_TARGET = "local/qwen2.5-coder-0.5b"
DEFAULT_PROPOSERS = ["local/qwen2.5-coder-1.5b", "local/smollm2-135m"]  # same family bigger, and another family


# --- the store and cached readers ------------------------------------------------------------------

@st.cache_resource
def _store_at(path: str) -> Store:
    """Once per server and database: migrate, and mark runs left 'running' by a dead process as interrupted."""
    from promptlab.runs import mark_dead_runs

    store = Store(path)
    store.migrate()
    mark_dead_runs(store, live=live_runs())  # at start-up: runs whose process died
    return store


def db_path() -> str:
    return str(default_db_path())


def get_store() -> Store:
    """The store at $PROMPTLAB_DB (or the default), one per path for the whole server."""
    return _store_at(db_path())


@st.cache_resource
def _demo_in(path: str) -> str:
    ds, _ = import_dataset(_store_at(path), DEMO_DATASET)
    # the second demo: short questions and extractions with reference answers (a third in Russian)
    import_dataset(_store_at(path), DEMO_REFERENCE, kind="reference", scoring={"metric": "normalized"})
    return ds.name


def ensure_demo_dataset() -> str:
    """Import the embedded demo dataset once per store (reused by content hash); returns its name."""
    return _demo_in(db_path())


def datasets_table() -> pd.DataFrame:
    return _datasets_at(db_path())


@st.cache_data(ttl=5, show_spinner=False)
def _datasets_at(path: str) -> pd.DataFrame:
    return _store_at(path).list_datasets()


@st.cache_data(ttl=30, show_spinner=False)
def zoo_table() -> pd.DataFrame:
    rows = [zoo_status(k) for k in ZOO]
    return pd.DataFrame(rows)[["model", "title", "family", "size_b", "status", "install"]]


def dataset(name: str):
    return _dataset_at(db_path(), name)


@st.cache_data(ttl=60, show_spinner=False)
def _dataset_at(path: str, name: str):
    return stored_dataset(_store_at(path), name)


def runs_table() -> pd.DataFrame:
    return _runs_at(db_path())


@st.cache_data(ttl=2, show_spinner=False)
def _runs_at(path: str) -> pd.DataFrame:
    return _store_at(path).list_runs()


def clear_readers() -> None:
    for fn in (_datasets_at, _dataset_at, _runs_at):
        fn.clear()


# --- models the user can pick ----------------------------------------------------------------------

def model_choices() -> dict[str, ModelSpec]:
    """Zoo models (installed ones) and configured models, by display name."""
    choices: dict[str, ModelSpec] = {}
    for key in ZOO:
        if zoo_status(key)["status"] != "not installed":
            choices[f"local/{key}"] = make_spec(f"local/{key}")
    for name, rec in get_store().list_models():
        choices[name] = spec_from_record({**rec, "name": name})
    return choices


# --- settings shared across pages (session state, namespaced) --------------------------------------

def setting(key: str, default: Any) -> Any:
    """A value shared across pages; a default of None only reads (so a page that merely looks, such as
    Runs reading the meta-prompt, never blanks a value another page fills in with its own default)."""
    if default is None:
        return st.session_state.get(f"promptlab.{key}")
    return st.session_state.setdefault(f"promptlab.{key}", default)


def set_setting(key: str, value: Any) -> None:
    st.session_state[f"promptlab.{key}"] = value


# --- jobs: long work in worker threads -------------------------------------------------------------

@dataclass
class Job:
    key: str
    kind: str
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: Any = None
    error: str | None = None
    progress: dict = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


_JOBS: dict[str, Job] = {}  # module level, not cache_resource: "Clear cache" must not forget live runs


def _registry() -> dict[str, Job]:
    return _JOBS


def jobs() -> dict[str, Job]:
    return _registry()


def start_job(key: str, kind: str, work: Callable[[Job], Any]) -> Job:
    """Run work(job) in a daemon thread; never two jobs under one key at once."""
    registry = _registry()
    current = registry.get(key)
    if current is not None and current.running:
        return current
    job = Job(key, kind)

    def target() -> None:
        try:
            job.result = work(job)
        except PromptlabError as exc:
            job.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown as one line; the traceback goes to the server log
            traceback.print_exc()
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            job.finished = time.time()

    job.thread = threading.Thread(target=target, name=f"promptlab-{kind}-{key}", daemon=True)
    registry[key] = job
    job.thread.start()
    return job


def job_result(key: str, progress_of: Callable[[dict], tuple[float, str]]) -> Any:
    """For a fragment that polls a worker job: its result once it finished well; None when there is no such job,
    while it runs (a progress bar from progress_of(job.progress) -> (share done, text)), or when it failed (the
    error shown)."""
    job = jobs().get(key)
    if job is None:
        return None
    if job.running:
        share, text = progress_of(job.progress)
        st.progress(min(1.0, share), text=text)
        return None
    if job.error:
        st.error(job.error)
        return None
    return job.result


def start_run(run_id: str) -> Job:
    """Execute (or resume) an optimization run in the background (never one a study is executing)."""
    store = get_store()
    if run_id in live_runs() and run_id not in _registry():
        raise PromptlabError(f"run {run_id} is being executed by a study right now")
    return start_job(run_id, "run", lambda job: runs.execute(store, run_id, stop=job.stop))


def start_study(study_id: str) -> Job:
    """Execute (or resume) a study's runs in the background, one after another."""
    from promptlab import study as S

    store = get_store()

    def work(job: Job):
        def on_run(i, n, member):
            job.progress.update(run_id=member.run_id, index=i + 1, total=n)
        return S.execute_study(store, study_id, on_run=on_run, stop=job.stop)

    return start_job(study_id, "study", work)


def live_runs() -> set[str]:
    """Run ids this server is executing now: run jobs, and the current run of each study job."""
    live = set()
    for key, job in _registry().items():
        if job.running:
            live.add(job.progress.get("run_id", key) if job.kind == "study" else key)
    return live


@st.cache_data(ttl=10, show_spinner="Analysing the study…")
def _study_analysis(path: str, study_id: str, finished: int) -> tuple:
    from promptlab import study as S

    store = _store_at(path)
    return S.analyze(store, study_id), S.head_to_head(store, study_id)


def study_analysis(study_id: str) -> tuple:
    """The study's cells and head-to-head pairs, recomputed when another of its runs finishes."""
    members = get_store().study_members(study_id)
    return _study_analysis(db_path(), study_id, int((members["status"] == "finished").sum()))


def run_is_live(run_id: str) -> bool:
    return run_id in live_runs()


def stop_run(run_id: str) -> None:
    job = _registry().get(run_id)
    if job is not None:
        job.stop.set()


def error_box(exc: Exception) -> None:
    """A user-facing error: the message, never a traceback."""
    st.error(str(exc) if isinstance(exc, PromptlabError) else f"Something went wrong: {type(exc).__name__}: {exc}")


def chart_exports(fig, stem: str, key: str) -> None:
    """Download buttons for a chart: interactive HTML at once, PNG rendered on request (it takes seconds)."""
    from promptlab import charts

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


def prompt_setting_keys(ds) -> tuple[str, str]:
    """Where the Prompts page keeps the meta-prompt template (one per kind of task) and the task text (one per
    dataset), for the Runs page to start runs with them."""
    return ("meta_prompt" if ds.has_labels else "meta_prompt_open"), f"task.{ds.name}"


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
    current = setting("run", ids[0])
    run_id = st.selectbox("Run", ids, index=ids.index(current) if current in ids else 0, format_func=labels.get, key=key)
    set_setting("run", run_id)
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
