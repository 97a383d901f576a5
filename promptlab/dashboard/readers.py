"""The one store per database for the whole server, and the cached readers over it keyed by ids (clear_readers after a write)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from promptlab.dashboard.worker_registry import live_runs
from promptlab.data import Dataset, import_dataset, stored_dataset
from promptlab.local import ZOO, zoo_status
from promptlab.models import ModelSpec, make_spec, spec_from_record
from promptlab.runs import mark_dead_runs
from promptlab.store import CLONE, Store, default_db_path

DEMO_DATASET = CLONE / "data" / "support_tickets.csv"
DEMO_REFERENCE = CLONE / "data" / "short_answers.csv"


@st.cache_resource
def _store_at(path: str) -> Store:
    """Once per server and database: migrate, and mark runs left 'running' by a dead process as interrupted."""
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


def dataset(name: str) -> Dataset:
    return _dataset_at(db_path(), name)


@st.cache_data(ttl=60, show_spinner=False)
def _dataset_at(path: str, name: str) -> Dataset:
    return stored_dataset(_store_at(path), name)


def runs_table() -> pd.DataFrame:
    return _runs_at(db_path())


@st.cache_data(ttl=2, show_spinner=False)
def _runs_at(path: str) -> pd.DataFrame:
    return _store_at(path).list_runs()


def clear_readers() -> None:
    for fn in (_datasets_at, _dataset_at, _runs_at):
        fn.clear()


def model_choices() -> dict[str, ModelSpec]:
    """Zoo models (installed ones) and configured models, by display name."""
    choices: dict[str, ModelSpec] = {}
    for key in ZOO:
        if zoo_status(key)["status"] != "not installed":
            choices[f"local/{key}"] = make_spec(f"local/{key}")
    for name, rec in get_store().list_models():
        choices[name] = spec_from_record({**rec, "name": name})
    return choices
