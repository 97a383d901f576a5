"""Prompts and proposers: target, metric, proposer models, the meta-prompt template, and manual search."""
import streamlit as st

from promptlab import charts, jobs, planning
from promptlab import dashboard as ui
from promptlab.errors import PromptlabError
from promptlab.prompt import PromptTemplate
from promptlab.models import make_spec, spec_from_record
from promptlab.optimize import meta_prompt as P
from promptlab.prompt import template_text
from promptlab.planning import default_task
from promptlab.scoring.labels import GLOBAL_METRICS, LABEL_METRICS, parse_metric
from promptlab.scoring.objective import (DEFAULT_RUBRIC, TAKES_ARGUMENT, JudgeSettings, default_spec, judge_record,
                                         metric_choices, metric_spec as write_spec, parse_objective, parse_scale,
                                         save_scoring)
from promptlab.scoring.scorers import parse_scorer

st.set_page_config(page_title="promptlab · Prompts and proposers", layout="wide")
ui.sidebar_nav()
st.title("Prompts and proposers")
ui.ensure_demo_dataset()
store = ui.get_store()
choices = ui.model_choices()
datasets = ui.datasets_table()

# --- what we optimize ------------------------------------------------------------------------------
st.subheader("Target, data and metric")
c1, c2, c3, c4 = st.columns([2, 2, 2, 2])
names = datasets["name"].tolist()
ds_name = c1.selectbox("Dataset", names, index=names.index(ui.remembered("dataset", names[0])) if ui.remembered("dataset", names[0]) in names else 0)
ui.remember("dataset", ds_name)
ds = ui.dataset(ds_name)
model_names = list(choices)
target_default = ui.remembered("target", ui.DEFAULT_TARGET)
target = c2.selectbox("Target model", model_names, index=model_names.index(target_default) if target_default in model_names else 0)
ui.remember("target", target)
judge_rec = None


if ds.has_labels:
    metric_names = list(GLOBAL_METRICS) + list(LABEL_METRICS)
    metric_name = c3.selectbox("Metric", metric_names, index=0)
    metric_label = c4.selectbox("Positive label", ds.labels, disabled=metric_name not in TAKES_ARGUMENT)
    metric_spec = write_spec(metric_name, metric_label)
    metric = parse_metric(metric_spec, ds.labels)
    ui.remember("metric", metric_spec)
else:
    # Scoring is chosen per dataset and stored with it: runs, the CLI and manual search all use it.
    scoring = dict(ds.scoring or {})
    kinds = metric_choices(ds.kind)
    current = default_spec(ds).split(":")[0]
    metric_name = c3.selectbox("Scorer", kinds, index=kinds.index(current) if current in kinds else 0,
                               help="How each reply is scored against the reference: " + "; ".join(
                                   f"{k}: {parse_scorer(k + (':x' if k == 'json' else '')).describe()}"
                                   for k in kinds if k != "judge") + "; judge: an LLM grades it by your rubric.")
    old_arg = (scoring.get("metric") or "").partition(":")[2]
    arg = c4.text_input("Scorer argument", old_arg, disabled=metric_name not in TAKES_ARGUMENT,
                        help="regex: a pattern (blank: the reference is the pattern); numeric: a tolerance such as "
                             "0.01 or 5%; json: the field to compare, e.g. answer.city")
    metric_spec = write_spec(metric_name, arg)
    new_scoring = {"metric": metric_spec}
    if metric_name == "judge":
        j = scoring.get("judge") or {}
        judges = dict(choices)
        j_name = None
        if isinstance(j.get("model"), dict):  # the stored judge stays selectable even if it is not configured here
            j_name = j["model"].get("name") or j["model"]["model"]
            judges.setdefault(j_name, spec_from_record(j["model"]))
        names_j = list(judges)
        c5, c6 = st.columns([1, 3])
        judge_name = c5.selectbox("Judge model", names_j,
                                  index=names_j.index(j_name) if j_name in names_j else len(names_j) - 1)
        scales = list(dict.fromkeys([f"{j.get('lo', 1)}-{j.get('hi', 5)}", "1-5", "0-1"]))
        scale = c5.selectbox("Judge's scale", scales, index=0)
        rubric = c6.text_area("Rubric (what earns each grade)", j.get("rubric") or DEFAULT_RUBRIC, height=110)
        new_scoring["judge"] = judge_record(JudgeSettings(judges[judge_name].to_record(), rubric.strip() or DEFAULT_RUBRIC,  # cleared: the default
                                                           parse_scale(scale)), ds)
    try:
        checked, saved = save_scoring(store, ds, new_scoring)  # saved only when the analyst changed something
        if saved:
            ui.clear_readers()
            ds = ui.dataset(ds_name)
        judge_rec = checked.get("judge")
        metric = parse_objective(metric_spec, ds, judge_rec, store)
    except PromptlabError as exc:
        st.error(str(exc))
        st.stop()
    ui.remember("metric", metric_spec)
st.caption(f"We maximize **{metric.describe()}** for **{target}** on **{ds_name}** ({ds.n} rows).")

# --- proposers -------------------------------------------------------------------------------------
st.subheader("Proposer models")
default_props = [m for m in ui.remembered("proposers", ui.DEFAULT_PROPOSERS) if m in choices]
proposers = st.multiselect("Proposers (two are drawn at random per round)", model_names, default=default_props)
ui.remember("proposers", proposers)
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
        st.dataframe([{"name": n, "model": r["model"], "api base": r.get("api_base"), "key env var": r.get("api_key_env"),
                       "family": r["family"], "in flight per endpoint": r.get("concurrency")}
                      for n, r in configured], hide_index=True, width="stretch")

# --- meta-prompt -----------------------------------------------------------------------------------
st.subheader("Meta-prompt")
meta_key, task_key = ui.remembered_prompt_keys(ds)
template = st.text_area("Template (stored verbatim with each run)",
                        ui.remembered(meta_key, P.default_meta_prompt(ds.has_labels)), height=320)
with st.expander("Placeholders"):
    st.table([{"placeholder": "{" + k + "}", "what it shows": v} for k, v in P.PLACEHOLDERS.items()])
try:
    P.check_template(template)
    ui.remember(meta_key, template)
    task = st.text_input("Task description shown to proposers", ui.remembered(task_key, default_task(ds)))
    ui.remember(task_key, task)
    preview = planning.preview_meta_prompt(store, ds, template, task, metric, ui.runs_table())
    with st.expander("Live preview with the current history", expanded=False):
        st.caption(f"Filled as the arena fills it, with {preview.source}.")
        st.code(preview.text, language="markdown", wrap_lines=True)
except (P.MetaPromptError, PromptlabError) as exc:
    st.error(str(exc))

# --- manual search ---------------------------------------------------------------------------------
st.subheader("Manual search: score prompts side by side")
n = st.number_input("How many prompts", 1, 4, 2)
cols = st.columns(int(n))
texts = []
defaults = planning.starting_prompts(ds.kind)
for i, col in enumerate(cols):
    texts.append(col.text_area(f"Prompt {i + 1}", ui.remembered(f"manual.{i}", defaults[i] if i < len(defaults) else ""),
                               height=160, key=f"manual.text.{i}"))
    ui.remember(f"manual.{i}", texts[-1])
split = st.radio("Score on", ["val", "train", "test"], horizontal=True,
                 help="Select prompts on val; look at test only for a final check.")
worker_key = f"manual:{ds_name}"
if st.button("Evaluate side by side", type="primary"):
    try:
        templates = jobs.templates_from_texts(texts, ds)
        spec = choices[target]
        ui.score_prompts(worker_key, spec, templates, ds, split, metric_spec, judge_rec)
    except PromptlabError as exc:
        st.error(str(exc))


@st.fragment(run_every=1.5)
def manual_results() -> None:
    comparison = ui.worker_result(worker_key, "Scoring the prompts side by side (cached calls are free)")
    if comparison is None:
        return
    st.dataframe(comparison.table(), hide_index=True, width="stretch")
    heat = st.columns(len(comparison.results))
    for i, (col, res) in enumerate(zip(heat, comparison.results)):
        if res.labels:
            col.plotly_chart(charts.confusion_heatmap(res.confusion(), f"Prompt {i + 1}"), width="stretch",
                             key=f"cm{i}")
        if col.button("Save as baseline", key=f"save_baseline.{i}"):
            store.save_baseline(ds.id, res.prompt.id, res.prompt.system, res.prompt.user)
            col.success("Saved: it will be a baseline of new runs on this dataset.")
    dis = comparison.disagreements()
    st.markdown(f"**Examples where the prompts disagree** ({len(dis)} of {comparison.results[0].n})")
    st.dataframe(ui.in_words(dis.head(50)), hide_index=True, width="stretch")


manual_results()

saved = store.baselines(ds.id)
if saved:
    st.markdown("**Saved baselines for this dataset**")
    for pid, system, user in saved:
        st.code(template_text(PromptTemplate(system, user)), language="text")

# --- grading outputs by hand ----------------------------------------------------------------------
st.subheader("Grade outputs by hand")
st.caption("Grade one output at a time (pass/fail, or 1–5 with an optional note), from the keyboard. The grades become "
           "the prompt's score with its n and CI, and can check an LLM judge (agreement and Cohen's kappa).")
ui.grading_panel(store, ds, choices[target], texts[0] if texts else "", choices)
