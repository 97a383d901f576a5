"""The one bridge to Streamlit: the cached store, cached readers, and the embedded default.

Pages call these and render; nothing else in promptlab imports streamlit.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from promptlab.data import import_dataset
from promptlab.local import ZOO, zoo_status
from promptlab.store import Store

DEMO_DATASET = Path(__file__).resolve().parent.parent / "data" / "support_tickets.csv"


@st.cache_resource
def get_store() -> Store:
    store = Store()
    store.migrate()
    return store


@st.cache_resource
def ensure_demo_dataset() -> str:
    """Import the embedded demo dataset once (reused by content hash afterwards); returns its name."""
    ds, _ = import_dataset(get_store(), DEMO_DATASET)
    return ds.name


@st.cache_data(ttl=5)
def datasets_table() -> pd.DataFrame:
    return get_store().list_datasets()


@st.cache_data(ttl=30)
def zoo_table() -> pd.DataFrame:
    rows = [zoo_status(k) for k in ZOO]
    return pd.DataFrame(rows)[["model", "title", "family", "size_b", "status", "install"]]


def clear_readers() -> None:
    datasets_table.clear()
