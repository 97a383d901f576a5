"""Runs: start a run (auto, arena, few-shot, textual gradient, or a chain) with its projected calls, follow it live, stop and resume; all runs with status."""
import streamlit as st

from promptlab import group as G
from promptlab import dashboard as ui
from promptlab import planning, results, runs
from promptlab.optimize import registry
from promptlab import study as S
from promptlab.errors import PromptlabError
from promptlab.prompt import PromptTemplate
from promptlab.scoring.labels import GLOBAL_METRICS
from promptlab.scoring.objective import default_spec, metric_spec

st.set_page_config(page_title="promptlab · Runs", layout="wide")
ui.sidebar_nav()
st.title("Runs")
ui.ensure_demo_dataset()
store = ui.get_store()
choices = ui.model_choices()
runs.mark_dead_runs(store, live=ui.live_runs())

datasets = ui.datasets_table()
names = datasets["name"].tolist()
st.subheader("Start a run")
with st.container(border=True):
    # The short form: what a newcomer decides. Everything else waits under "Advanced", with its defaults.
    c1, c2, c3 = st.columns(3)
    ds_name = c1.selectbox("Dataset", names, index=names.index(ui.remembered("dataset", names[0])) if ui.remembered("dataset", names[0]) in names else 0, key="runs.dataset")
    model_names = list(choices)
    target_default = ui.remembered("target", ui.DEFAULT_TARGET)
    target = c2.selectbox("Target", model_names, index=model_names.index(target_default) if target_default in model_names else 0, key="runs.target")
    strategy = c3.selectbox(
        "Strategy", registry.STRATEGY_MENU, key="runs.strategy",
        help="auto (the default): proposers write instructions, demonstration sets are searched for the best of them, "
             "proposers write instructions for those demos, and the leader is edited from its failures, on one "
             "budget; every candidate is raced and the result confirmed on held-back val. arena: proposers rewrite "
             "the instruction; fewshot: demo sets for the best instructions; gradient: a critic reads failures and an "
             "editor rewrites. A chain runs them in order on one budget.")
    p1, p2 = st.columns([3, 1])
    proposers = p1.multiselect("Proposers", model_names, default=[m for m in ui.remembered("proposers", ui.DEFAULT_PROPOSERS) if m in choices] or model_names[:2], key="runs.proposers")
    st.session_state.setdefault("runs.budget", 600)  # a default, yet clearable (a widget given a value is not)
    budget = p2.number_input("Budget: target requests (empty: no limit)", 0, 1_000_000, None, step=100,
                             key="runs.budget", placeholder="no limit",
                             help="The target requests the search may make, each prompt x example once (cached ones count); test scoring is "
                                  "extra. Clear the box for no limit; 0 is refused, as by `promptlab optimize`.")
    run_ds = ui.dataset(ds_name)
    metric_default = ui.remembered("metric", "accuracy") if run_ds.has_labels else default_spec(run_ds)
    if run_ds.has_labels and ":" not in metric_default and metric_default not in GLOBAL_METRICS:
        metric_default = "accuracy"  # a scorer picked for another dataset
    saved = store.baselines(run_ds.id)
    with st.expander("Advanced: metric, your own prompt, more models, rounds, cost, and each stage's settings"):
        a1, a2 = st.columns(2)
        metric = a1.text_input("Metric", metric_default, key=f"runs.metric.{ds_name}",
                               help="Labels: accuracy, balanced_accuracy, macro_f1, mcc, cohen_kappa, precision:L, "
                                    "recall:L, f1:L, specificity:L. Reference answers: exact, normalized, contains, "
                                    "regex[:P], numeric[:TOL], token_f1, json:FIELD, or judge. No target: judge (the "
                                    "judge and its rubric are set per dataset on the Prompts and proposers page).")
        more_targets = a2.multiselect(
            "Also find the best prompt for (optional)", [m for m in model_names if m != target], key="runs.more_targets",
            help="One search per model with the same data, proposers, budget and seed, stored as a group: Results then "
                 "shows each model's best prompt, its held-out score and cost, and how each prompt transfers to the "
                 "others.")
        if run_ds.has_labels:  # a floor: e.g. recall of 'fraud', provided precision of 'fraud' stays at least 0.4
            f1, f2, _ = st.columns([2, 1, 3])
            floor = f1.text_input("Floor (optional): a second metric that must hold", "", key=f"runs.floor.{ds_name}",
                                  placeholder="precision:LABEL",
                                  help="Candidates that keep the floor rank above every candidate that misses it, so "
                                       "recall of a label cannot be won by answering that label to everything.")
            floor_at = f2.number_input("at least", -1.0, 1.0, 0.4, 0.05, key=f"runs.floor_at.{ds_name}")
            if floor.strip():
                metric = metric_spec(metric, floors=[(floor, floor_at)])
        own_prompt = st.text_area(
            "Start from your own prompt (optional)", "", key=f"runs.baseline.{ds_name}", height=100,
            placeholder=("Empty: the baselines saved on the Prompts and proposers page" if saved else
                         "Empty: a plain prompt listing the labels") + ". Placeholders: {input}, {labels}, any input column.",
            help="The search improves this prompt: proposers see it as the best so far, demonstrations are searched for "
                 "it too, and the result replaces it only if it beats it beyond noise on held-back examples.")
        c5, c6, c8 = st.columns(3)
        rounds = c5.number_input("Rounds", 1, 50, 3, key="runs.rounds", help="Per stage, for auto and chains.")
        seed = c6.number_input("Seed", 0, 100_000, 0, key="runs.seed")
        patience = c8.number_input("Patience (0 = off)", 0, 50, 0, key="runs.patience")
        k1, k2 = st.columns([2, 3])
        ceiling_text = k1.text_input(
            "Cost ceilings per call (optional)", "", key="runs.ceilings", placeholder="tokens<=300, latency<=0.5",
            help="tokens: mean prompt tokens per call (demonstrations included); latency: median seconds per call; "
                 "price: dollars per 1,000 calls (models in litellm's cost map). A candidate that costs more is dropped "
                 "at its first rung; proposers are told the ceiling.")
        keep_whole = k2.checkbox(
            "Ship the decided result as it is (do not simplify it)", key="runs.prefer_score",
            help="By default, after the decision the result's parts are tried away (fixed demos for per-input ones, your "
                 "instruction, fewer demos, a cheaper contender) and the simplest, cheapest variant that the held-back "
                 "examples show no worse than it ships. Tick this to ship the decided result unsimplified.")
        review_mode = st.checkbox(
            "Pause after each round for my review (semi-automatic)", key="runs.review",
            help="After every round the run waits: keep or discard the new candidates, edit one, add your own, "
                 "re-score, then continue. Every decision is stored with who made it and shows in the charts.")
        extra = {}
        for title, group_settings in registry.settings_by_stage(strategy):  # each widget built from its declaration
            st.caption(title)
            extra |= ui.setting_inputs(group_settings, model_names)
    try:
        ds = ui.dataset(ds_name)
        meta_key, task_key = ui.remembered_prompt_keys(ds)
        request = planning.RunRequest(  # the request `promptlab optimize` builds from its flags
            ds_name, target, tuple(proposers), metric=metric, strategy=strategy, rounds=int(rounds), seed=int(seed),
            budget=None if budget is None else int(budget), patience=int(patience) or None, settings=extra,
            baselines=((PromptTemplate.from_text(own_prompt.strip()),) if own_prompt.strip()
                       else tuple(PromptTemplate(s, u) for _, s, u in saved)),
            meta_prompt=ui.remembered(meta_key, None), task=ui.remembered(task_key, None), review=review_mode,
            ceilings=tuple(c.strip() for c in ceiling_text.split(",") if c.strip()),
            prefer="score" if keep_whole else planning.DEFAULT_PREFER,
        )
        plan = planning.plan(store, request)
        group_plans = G.plan_group(store, request, [target, *more_targets]) if more_targets else None
        st.info(f"Projected: {plan.line}. Baselines: {len(plan.config.baselines)}."
                + (f" One search for each of {len(group_plans)} models, one after another." if group_plans else ""))
        if plan.problem:
            st.warning(plan.problem[0].upper() + plan.problem[1:])
        elif group_plans and st.button("Start one search per model", type="primary", key="runs.start"):
            group_id, reused = G.create_group(store, group_plans)
            ui.start_group(group_id)
            st.toast(f"Group {group_id} {'resumed' if reused else 'started'}: Results shows it as its searches finish.")
            ui.clear_readers()
        elif not group_plans and st.button("Start run", type="primary", key="runs.start"):
            run_id = runs.create_run(store, plan.config)
            ui.start_run(run_id)
            ui.remember("run", run_id)
            st.session_state["runs.pick"] = run_id  # show the new run, even if another was picked in this session
            ui.clear_readers()
            st.rerun()
    except PromptlabError as exc:
        st.error(str(exc))

with st.expander("Start a study: same-family versus cross-family proposers, over seeds"):
    st.caption("A grid of ordinary runs: every target x every proposer alone (and, if asked, all of them together) x "
               "each seed, all with the same budget. Results shows the held-out gains with CIs.")
    s1, s2 = st.columns(2)
    s_targets = s1.multiselect("Targets", model_names, default=[target], key="study.targets")
    s_props = s2.multiselect("Proposers (each runs alone)", model_names, default=proposers, key="study.proposers")
    s3, s4, s5 = st.columns(3)
    s_seeds = s3.number_input("Seeds", 1, 20, 3, key="study.seeds")
    s_rounds = s4.number_input("Rounds per run", 1, 50, 2, key="study.rounds")
    s_budget = s5.number_input("Budget per run: target requests", 50, 1_000_000, 400, step=50, key="study.budget")
    # The short form as for a run; the rest behind a toggle (an expander cannot hold another expander).
    s_mix, s_strategy = False, "arena"
    if st.toggle("Advanced: the strategy, and all proposers together as one more arm", key="study.advanced",
                 help="Off: the arena, each proposer alone."):
        s6, s7 = st.columns(2)
        s_strategy = s6.selectbox("Strategy", ["arena", "arena,fewshot", "gradient"], key="study.strategy")
        s_mix = s7.checkbox("Also all proposers together", key="study.mix")
    s_specs = [choices[p] for p in s_props]
    s_mixes = [[p.label for p in s_specs]] if s_mix and len(s_specs) > 1 else None
    n_runs = len(s_targets) * len(S.proposer_sets(s_specs, s_mixes)) * int(s_seeds)
    st.info(f"{n_runs} runs of up to {int(s_budget)} target requests each for the search (plus test scoring); "
            "calls already cached are free.")
    try:
        st.caption(S.power(ui.dataset(ds_name), metric, int(s_seeds)))
    except PromptlabError as exc:
        st.caption(str(exc))
    if st.button("Start study", key="study.start", disabled=not (s_targets and s_props)):
        try:
            study_id, reused, _ = S.request_study(store, S.StudyRequest(  # the request `promptlab study` builds
                ds_name, tuple(s_targets), tuple(s_props), int(s_seeds), mixes=tuple(map(tuple, s_mixes or ())),
                budget=int(s_budget), rounds=int(s_rounds), metric=metric, strategy=s_strategy))
            ui.start_study(study_id)
            st.toast(f"Study {study_id} {'resumed' if reused else 'started'}: its runs appear below as they go.")
            ui.clear_readers()
        except PromptlabError as exc:
            st.error(str(exc))
    studies = store.list_studies()
    if len(studies):
        busy = set(ui.running(kind="study"))
        st.dataframe(ui.in_words(studies.assign(running=[i in busy for i in studies["id"]])), hide_index=True,
                     width="stretch")
        idle = [i for i, f, n in zip(studies["id"], studies["finished"], studies["runs"]) if f < n and i not in busy]
        if idle:
            pick = st.selectbox("Resume a study", idle, key="study.resume_pick")
            if st.button("Resume study", key="study.resume"):
                ui.start_study(pick)
                st.toast(f"Resuming {pick}: finished runs are kept.")

run_id, _, _ = ui.pick_run("runs.pick", "No optimization runs yet: start one above, or from the home page.")


@st.fragment(run_every=2)
def live(run_id: str) -> None:
    progress = results.live_progress(store, run_id)
    is_live = ui.run_is_live(run_id)
    status = progress["status"]
    seen_key = f"runs.seen_status.{run_id}"
    if st.session_state.get(seen_key, status) != status:
        st.session_state[seen_key] = status
        ui.clear_readers()
        st.rerun()  # the status changed: refresh the whole page (run list, selector), not just this fragment
    st.session_state[seen_key] = status
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    c1.metric("Status", status)
    c2.metric("Round", f"{progress['round']} / {progress['max_rounds']}")
    c3.metric("Candidates", progress["candidates"])
    done = progress["calls"] + progress["cached"]
    c4.metric("Calls (new / cached)", f"{progress['calls']} / {progress['cached']}",
              help="Cached calls are answered from the store at no cost; a repeated or resumed run is all cache.")
    if done:
        c4.caption(f"cache hits {progress['cached'] / done:.0%}")
    c5.metric("Tokens", f"{progress['tokens']:,}")
    c6.metric("ETA", progress["eta"])
    b1, b2, _ = st.columns([1, 1, 6])
    if is_live and b1.button("Stop", key=f"stop.{run_id}"):
        ui.stop_run(run_id)
        st.toast("Stopping after the current step…")
    if not is_live and runs.is_resumable(status) and b2.button("Resume", key=f"resume.{run_id}"):
        ui.start_run(run_id)
        st.toast("Resuming: finished calls come from the cache.")
    worker = ui.workers().get(run_id)
    if worker is not None and worker.error:
        st.error(worker.error)
    board = results.leaderboard(store, run_id)
    if len(board):
        st.dataframe(results.leaderboard_table(board), hide_index=True, width="stretch",
                     column_config={"prompt": st.column_config.TextColumn(width="large")})


live(run_id)
if store.run_row(run_id)["status"] == "paused" and not ui.run_is_live(run_id):
    ui.round_review(store, run_id)

st.subheader("All runs")
table = ui.runs_table()
st.dataframe(ui.in_words(table[["id", "kind", "dataset", "status", "created_at", "updated_at"]]), hide_index=True,
             width="stretch")
