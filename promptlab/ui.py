"""The one bridge to Streamlit: the cached store, cached readers, and the embedded default.

Pages call these and render; nothing else in promptlab imports streamlit.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from promptlab.data import import_dataset
from promptlab.local import ZOO, zoo_status
from promptlab.store import Store, default_db_path

DEMO_DATASET = Path(__file__).resolve().parent.parent / "data" / "support_tickets.csv"


@st.cache_resource
def _store_at(path: str) -> Store:
    store = Store(path)
    store.migrate()
    return store


def get_store() -> Store:
    """The store at $PROMPTLAB_DB (or the default), one per path for the whole server."""
    return _store_at(str(default_db_path()))


@st.cache_resource
def _demo_in(path: str) -> str:
    ds, _ = import_dataset(_store_at(path), DEMO_DATASET)
    return ds.name


def ensure_demo_dataset() -> str:
    """Import the embedded demo dataset once per store (reused by content hash); returns its name."""
    return _demo_in(str(default_db_path()))


def datasets_table() -> pd.DataFrame:
    return _datasets_at(str(default_db_path()))


@st.cache_data(ttl=5)
def _datasets_at(path: str) -> pd.DataFrame:
    return _store_at(path).list_datasets()


@st.cache_data(ttl=30)
def zoo_table() -> pd.DataFrame:
    rows = [zoo_status(k) for k in ZOO]
    return pd.DataFrame(rows)[["model", "title", "family", "size_b", "status", "install"]]


def clear_readers() -> None:
    _datasets_at.clear()
