"""Meta-prompt and proposers: target, metric, proposer models, the meta-prompt template, and manual search."""
import streamlit as st

from promptlab import charts, manual, ui
from promptlab.errors import PromptlabError
from promptlab.metrics import GLOBAL_METRICS, LABEL_METRICS, parse_metric
from promptlab.models import make_spec
from promptlab.optimize import prompts as P

st.set_page_config(page_title="promptlab · Prompts and proposers", layout="wide")
st.title("Meta-prompt and proposers")
ui.ensure_demo_dataset()
store = ui.get_store()
choices = ui.model_choices()
datasets = ui.datasets_table()

# --- what we optimize ------------------------------------------------------------------------------
st.subheader("Target, data and metric")
c1, c2, c3, c4 = st.columns([2, 2, 2, 2])
names = datasets["name"].tolist()
ds_name = c1.selectbox("Dataset", names, index=names.index(ui.setting("dataset", names[0])) if ui.setting("dataset", names[0]) in names else 0)
ui.set_setting("dataset", ds_name)
ds = ui.dataset(ds_name)
model_names = list(choices)
target_default = ui.setting("target", ui.DEFAULT_TARGET)
target = c2.selectbox("Target model", model_names, index=model_names.index(target_default) if target_default in model_names else 0)
ui.set_setting("target", target)
metric_names = list(GLOBAL_METRICS) + list(LABEL_METRICS)
metric_name = c3.selectbox("Metric", metric_names, index=0)
metric_label = c4.selectbox("Positive label", ds.labels, disabled=metric_name not in LABEL_METRICS)
metric_spec = f"{metric_name}:{metric_label}" if metric_name in LABEL_METRICS else metric_name
metric = parse_metric(metric_spec, ds.labels)
ui.set_setting("metric", metric_spec)
st.caption(f"We maximize **{metric.describe()}** for **{target}** on **{ds_name}** ({ds.n} rows).")

# --- proposers -------------------------------------------------------------------------------------
st.subheader("Proposer models")
default_props = [m for m in ui.setting("proposers", ui.DEFAULT_PROPOSERS) if m in choices]
proposers = st.multiselect("Proposers (two are drawn at random per round)", model_names, default=default_props)
ui.set_setting("proposers", proposers)
if proposers:
    st.dataframe(
        [{"model": p, "family": choices[p].family, "size (B)": choices[p].size_b,
          "same family as target": choices[p].family == choices[target].family} for p in proposers],
        hide_index=True, width="stretch",
    )
with st.expander("Add a model (any litellm provider or OpenAI-compatible server)"):
    with st.form("add_model"):
        a1, a2 = st.columns(2)
        new_name = a1.text_input("Name", placeholder="gemma-9b")
        new_model = a2.text_input("litellm model", placeholder="openai/gemma2:9b")
        a3, a4, a5, a6 = st.columns([3, 2, 2, 1])
        new_base = a3.text_input("api_base (optional)", placeholder="http://127.0.0.1:11434/v1",
                                 help="Several replicas of one model (a vLLM or Ollama cluster): comma-separated URLs. "
                                      "Each call goes to the least busy.")
        new_env = a4.text_input("API key env var NAME (never the key)", placeholder="OPENROUTER_API_KEY")
        new_family = a5.text_input("Family (blank: inferred from the name)")
        new_conc = a6.number_input("In flight", min_value=0, max_value=512, value=0,
                                   help="Calls in flight per endpoint. 0: the default (2 for a server on 127.0.0.1, "
                                        "8 for a hosted provider).")
        if st.form_submit_button("Save model"):
            try:
                if not new_name.strip():
                    raise PromptlabError("give the model a name")
                spec = make_spec(new_model, api_base=new_base or None, api_key_env=new_env or None,
                                 family=new_family or None, name=new_name.strip(), concurrency=int(new_conc) or None)
                store.save_model(new_name.strip(), spec.to_record())
                st.success(f"Saved '{new_name}' (family {spec.family}, size {spec.size_b or '?'}B).")
                st.rerun()
            except PromptlabError as exc:
                st.error(str(exc))
    configured = store.list_models()
    if configured:
        st.dataframe([{"name": n, "model": r["model"], "api_base": r.get("api_base"), "key env var": r.get("api_key_env"),
                       "family": r["family"], "in flight per endpoint": r.get("concurrency")}
                      for n, r in configured], hide_index=True, width="stretch")

# --- meta-prompt -----------------------------------------------------------------------------------
st.subheader("Meta-prompt")
template = st.text_area("Template (stored verbatim with each run)", ui.setting("meta_prompt", P.DEFAULT_META_PROMPT), height=320)
with st.expander("Placeholders"):
    st.table([{"placeholder": "{" + k + "}", "what it shows": v} for k, v in P.PLACEHOLDERS.items()])
try:
    P.check_template(template)
    ui.set_setting("meta_prompt", template)
    task = st.text_input("Task description shown to proposers", ui.setting("task", f"Label each text from the dataset '{ds_name}' with the right label."))
    ui.set_setting("task", task)
    preview = manual.preview_meta_prompt(store, ds, template, task, metric, ui.runs_table())
    with st.expander("Live preview with the current history", expanded=False):
        st.code(preview, language="markdown")
except (P.MetaPromptError, PromptlabError) as exc:
    st.error(str(exc))

# --- manual search ---------------------------------------------------------------------------------
st.subheader("Manual search: score prompts side by side")
n = st.number_input("How many prompts", 1, 4, 2)
cols = st.columns(int(n))
texts = []
defaults = ["Classify the text. Answer with one of these labels: {labels}.",
            "Route the text to one label: {labels}.\nAnswer with the label name only."]
for i, col in enumerate(cols):
    texts.append(col.text_area(f"Prompt {i + 1}", ui.setting(f"manual.{i}", defaults[i] if i < len(defaults) else ""),
                               height=160, key=f"manual.text.{i}"))
    ui.set_setting(f"manual.{i}", texts[-1])
split = st.radio("Score on", ["val", "train", "test"], horizontal=True,
                 help="Select prompts on val; look at test only for a final check.")
job_key = f"manual:{ds_name}"
if st.button("Evaluate side by side", type="primary"):
    try:
        templates = manual.templates_from_texts(texts, ds)
        spec = choices[target]
        ui.start_job(job_key, "manual", lambda job: manual.compare(store, spec, templates, ds, split, metric_spec, job.progress))
    except PromptlabError as exc:
        st.error(str(exc))


@st.fragment(run_every=1.5)
def manual_results() -> None:
    job = ui.jobs().get(job_key)
    if job is None:
        return
    if job.running:
        p = job.progress
        st.progress(min(1.0, (p.get("prompt", 1) - 1) / max(1, p.get("of", 1))),
                    text=f"scoring prompt {p.get('prompt', 1)} of {p.get('of', '?')} on {p.get('n', '?')} examples… "
                         f"{p.get('calls', 0)} new calls so far (cached ones are free)")
        return
    if job.error:
        st.error(job.error)
        return
    comparison = job.result
    if comparison is None:
        return
    st.dataframe(comparison.table(), hide_index=True, width="stretch")
    heat = st.columns(len(comparison.results))
    for i, (col, res) in enumerate(zip(heat, comparison.results)):
        col.plotly_chart(charts.confusion_heatmap(res.confusion(), f"Prompt {i + 1}"), width="stretch",
                         key=f"cm{i}")
        if col.button("Save as baseline", key=f"save_baseline.{i}"):
            store.save_baseline(ds.id, res.prompt.id, res.prompt.system, res.prompt.user)
            col.success("Saved: it will be a baseline of new runs on this dataset.")
    dis = comparison.disagreements()
    st.markdown(f"**Examples where the prompts disagree** ({len(dis)} of {comparison.results[0].n})")
    st.dataframe(dis.head(50), hide_index=True, width="stretch")


manual_results()

saved = store.baselines(ds.id)
if saved:
    st.markdown("**Saved baselines for this dataset**")
    for pid, system, user in saved:
        st.code(system if user.strip() == "{input}" else (system + "\n\n" + user).strip(), language="text")
