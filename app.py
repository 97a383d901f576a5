"""Home: what promptlab is, what is loaded, where to start."""
import streamlit as st

from promptlab import ui

st.set_page_config(page_title="promptlab", page_icon="🧪", layout="wide")
st.title("promptlab")
st.write(
    "Find the best prompt for a given LLM on a labeled dataset — by hand, or automatically with "
    "several proposer models competing arena-style. Every call is stored in DuckDB and never paid for twice."
)

demo = ui.ensure_demo_dataset()
st.subheader("Datasets")
datasets = ui.datasets_table()
st.caption(f"The demo dataset **{demo}** is loaded. Upload your own on the Datasets page.")
st.dataframe(datasets[["name", "n_rows", "label_col", "source"]], hide_index=True, use_container_width=True)

st.subheader("Local models (offline, in-process)")
st.dataframe(ui.zoo_table(), hide_index=True, use_container_width=True)
st.caption("Any litellm model also works: OpenAI-compatible servers (Ollama, vLLM, LM Studio), OpenAI, OpenRouter, ….")
