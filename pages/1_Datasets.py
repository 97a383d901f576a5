"""Datasets: the stored datasets and their label distributions."""
import streamlit as st

from promptlab import ui

st.set_page_config(page_title="promptlab · Datasets", layout="wide")
st.title("Datasets")
ui.ensure_demo_dataset()
st.dataframe(ui.datasets_table(), hide_index=True, use_container_width=True)
