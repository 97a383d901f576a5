"""Results: score trajectories per model family, attribution, what each proposer was sent and replied, families,
leaderboard, one prompt, two runs, exports."""
import pandas as pd
import streamlit as st

from promptlab import charts, export, jobs, report, results, review, runs
from promptlab import group as G
from promptlab import dashboard as ui
from promptlab import study as S
from promptlab.columns import in_words
from promptlab.errors import PromptlabError
from promptlab.prompt import PromptTemplate
from promptlab.text import format_score

st.set_page_config(page_title="promptlab · Results", layout="wide")
ui.sidebar_nav()
st.title("Results")
ui.ensure_demo_dataset()
store = ui.get_store()
run_id, opt, labels = ui.pick_run("results.run", "No optimization runs yet: start one on the Runs page or from the home page.")
ids = opt["id"].tolist()
summary = results.summarize(store, run_id)
cands = store.candidates(run_id)
st.caption(f"Status: **{report.status_line(summary)}** · target {summary['target']} · metric {summary['metric']} · "
           f"seed {summary['seed']}")


fmt = format_score


c1, c2, c3, c4 = st.columns(4)
c1.metric("Baseline val / test", f"{fmt(summary['baseline_val'])} / {fmt(summary['baseline_test'])}")
gain = results.gain_on_test(summary)
c2.metric("Result val / test", f"{fmt(summary['best_val'])} / {fmt(summary['best_test'])}",
          delta=None if gain is None else f"{gain:+.3f} test vs baseline", delta_color="normal" if gain else "off")
c3.metric("n (val / test)", f"{summary['n_val']} / {summary['n_test']}")
c4.metric("Rounds · candidates", f"{summary['rounds']} · {summary['candidates']}")
if result := report.result_line(summary):
    (st.success if summary["result"]["replaced_baseline"] else st.info)(result)
for line in report.simplified_lines(summary):
    st.caption(line)
if leader := report.leader_line(summary):
    lead = st.container(border=True)
    lead.markdown(leader.split(" To ship it anyway")[0])
    chosen = summary.get("chosen")
    label = "Back to the decision's result" if chosen else f"Ship #{summary['result']['leader_id']} instead"
    if lead.button(label, key=f"results.choose.{run_id}", type="secondary" if chosen else "primary"):
        try:
            runs.choose_result(store, run_id, None if chosen else int(summary["result"]["leader_id"]),
                               note="" if chosen else "chosen on the Results page")
            st.rerun()
        except PromptlabError as exc:
            ui.error_box(exc)
if cost := report.cost_line(summary):
    st.caption(cost + ".")
if parts := report.parts_lines(summary):
    with st.expander("What each part of the result adds (test, with its cost per call)", expanded=True):
        for line in parts:
            st.markdown(f"- {line}")
if calls := report.calls_line(summary):
    st.caption(calls[0].upper() + calls[1:] + ".")
if fails := report.failures_line(summary):
    st.caption(f"Endpoint {fails}.")
if len(summary.get("stages") or []) > 1 or any(x["proposer_calls"] for x in summary.get("stages") or []):
    with st.expander("Where the calls went, stage by stage"):
        st.dataframe(results.stage_table(summary["stages"]), hide_index=True, width="stretch")
        st.caption("Asked: prompts the meta-prompts asked for; written: prompts found in the replies; usable: those "
                   "that passed the screen and were raced (a prompt that copied a train or val input word for word is "
                   "dropped); never scored: candidates the stage made that no example ever scored (a round starts "
                   "only when its share can race what it asks for). Leader: the best search-val score when the stage "
                   "ended.")

# --- trajectories ----------------------------------------------------------------------------------
st.subheader("Score trajectories per model family")
x_axis = st.radio("x axis", ["round", "target requests"], horizontal=True, key="results.x")
fig = charts.score_trajectories(cands, x="round" if x_axis == "round" else "target_requests", metric=summary["metric"],
                                stages=summary.get("stages"))
st.plotly_chart(fig, width="stretch", key="results.trajectories")
if stage := results.result_stage(summary.get("stages") or []):
    st.caption(f"Shaded: the run's stages, in order. The result came from the "
               f"**{stage}** stage.")
if (human := summary.get("decisions", {}).get("analyst")):
    st.caption("Human decisions in this run: " + ", ".join(f"{n} {a}" for a, n in human.items())
               + ". Stars mark candidates the analyst kept, crosses those discarded; prompts the analyst wrote are the "
                 "'human' family.")
ui.chart_exports(fig, f"{run_id}-trajectories", "results.trajectories")

# --- attribution and families ----------------------------------------------------------------------
st.subheader("Per-proposer attribution")
attr = pd.DataFrame(summary["proposers"])
if len(attr):
    st.dataframe(in_words(attr[["model", "family", "calls", "asked", "written", "usable", "usable_rate", "best_val",
                                "wins"]]), hide_index=True, width="stretch",
                 column_config={"usable share of asked": st.column_config.NumberColumn(format="percent")})
    bars = charts.attribution_bars(attr)
    st.plotly_chart(bars, width="stretch", key="results.attr")
    ui.chart_exports(bars, f"{run_id}-attribution", "results.attr")

st.subheader("What each proposer was sent, and what it replied")
calls = results.proposals(store, run_id)
if not calls:
    st.caption("No proposer call is stored for this run (a strategy that chooses demonstrations writes no prompt).")
else:
    stage_of = {c["round"]: c["stage"] for c in calls}
    shown = st.selectbox("Round", list(stage_of), index=len(stage_of) - 1, key=f"results.proposals.round.{run_id}",
                         format_func=lambda r: f"round {r} ({stage_of[r]})")
    for call in results.proposals(store, run_id, shown):
        with st.expander(report.call_line(call)):
            st.markdown("**The meta-prompt it received**")
            st.code(call["meta_prompt"], language="text", wrap_lines=True)
            critique = call["call"] == "critique"
            st.markdown("**Its feedback, as passed on to the editor**" if critique else "**Its reply**")
            st.code(call["reply"] or "(empty)", language="text", wrap_lines=True)

st.subheader("Families: same-family versus cross-family proposers")
st.dataframe(in_words(results.family_view(store, run_id)), hide_index=True, width="stretch")
st.caption("One run is one sample: differences between proposers within a run are not evidence on their own. "
           "Repeat over seeds (a study, below) before drawing a conclusion.")

st.subheader("Studies: which proposer family writes the best prompts for a target?")
studies = store.list_studies()
if studies.empty:
    st.caption("No studies yet: start one on the Runs page, or with `python -m promptlab study --dataset D "
               "--targets T --proposers P1,P2 --seeds 3`.")
else:
    study_id = ui.pick_grid(studies, "Study", "results.study", "runs")
    analysis_key = ui.analyze_study(study_id)
    if ui.workers()[analysis_key].running:  # a test score missing from the cache is being asked for, in the worker
        ui.wait_for((analysis_key,), "Analysing the study (test scores come from the cache)…")
    elif (analysis := ui.worker_result(analysis_key)) is not None:
        cell_list, pairs = analysis
        cells = S.cells_frame(cell_list)
        for target in dict.fromkeys(cells["target"]):
            mine = cells[cells["target"] == target]
            fig_s = charts.study_gains(mine, f"Target {target}")
            st.plotly_chart(fig_s, width="stretch", key=f"results.study.{target}")
            ui.chart_exports(fig_s, f"{study_id}-{target.replace('/', '_')}", f"results.study.{target}")
            st.info(S.reading(cell_list, target, pairs))
        st.dataframe(in_words(cells[["target", "proposer", "family", "relation", "seeds", "finished", "gain_mean",
                                     "ci_low", "ci_high", "p_value", "n_test", "better_on", "worse_on", "baseline_test",
                                     "best_test", "asked", "written", "usable"]]),
                     hide_index=True, width="stretch")
        st.caption("Gain: the best prompt's test score minus the baseline's on the same test examples, averaged over "
                   "seeds; CI: paired bootstrap over examples and seeds; p: paired sign-flip test (exact McNemar with "
                   "one seed; none for metrics that are not a per-example mean, where the CI decides).")
        if not pairs.empty:
            st.markdown("**Head to head**: the second proposer's best prompts minus the first's, on the same test "
                        "examples and seeds. This is the direct test of which writes better prompts.")
            st.dataframe(in_words(pairs), hide_index=True, width="stretch")

st.subheader("The best prompt for each model")
groups = store.list_studies(groups=True)
if groups.empty:
    st.caption("No group yet: on the Runs page pick more than one model under 'Also find the best prompt for', or run "
               "`python -m promptlab optimize --target A,B,C …` (one search per model, same data, proposers and budget).")
else:
    group_id = ui.pick_grid(groups, "Group", "results.group", "searches")
    g_frame = G.view(store, group_id)
    st.dataframe(in_words(g_frame.drop(columns=["prompt"]).assign(prompt=g_frame["prompt"])), hide_index=True,
                 width="stretch",
                 column_config={"prompt": st.column_config.TextColumn("best prompt", width="large")})
    st.caption("One row per model: its search's result on held-out test with its 95% CI and n, the gain over its "
               "baseline on the same test examples (paired 95% CI), and what a call with it costs.")
    if (g_frame["status"] == "finished").all():
        g_key = ui.group_matrix(group_id)
        if ui.workers()[g_key].running:  # off-diagonal cells not yet in the cache are being scored, in the worker
            ui.wait_for((g_key,), "Scoring each model's prompt on the other models", bar=True)
        elif (g_mat := ui.worker_result(g_key)) is not None:
            fig_g = charts.matrix_heatmap(g_mat.cells, g_mat.metric, "Each model's prompt on every model")
            st.plotly_chart(fig_g, width="stretch", key="results.group.matrix")
            ui.chart_exports(fig_g, f"{group_id}-matrix", "results.group.matrix")
            for line in jobs.matrix_lines(g_mat):
                st.markdown(f"- {line}")
            st.download_button("Markdown report of the group", G.markdown_report(store, group_id, g_mat, g_frame),
                               file_name=f"{group_id}-report.md", mime="text/markdown", key="results.group.report")
    else:
        st.caption("The prompts x models matrix appears when every search of the group has finished.")

# --- leaderboard and one prompt --------------------------------------------------------------------
st.subheader("Leaderboard")
board = results.leaderboard(store, run_id)
if board.empty:  # a run stopped or failed before its baseline was scored has nothing to show below
    st.info("No prompt of this run has been scored yet: resume it on the Runs page, or pick another run.")
    st.stop()
if board["constant"].astype(bool).any():
    st.caption("'constant answer': the prompt gives that label to at least 95% of the val examples it was scored on, "
               "whatever the input (recall of that label would score it 1.0).")
st.dataframe(results.leaderboard_table(board, marks=True), hide_index=True, width="stretch",
             column_config={"prompt": st.column_config.TextColumn(width="large")})
with st.expander("Score against cost per call", expanded=False):
    axes = [c for c in charts.COST_AXES if c in board and board[c].notna().any()]
    if axes:
        axis = st.radio("cost", axes, format_func=charts.COST_AXES.get, horizontal=True, key="results.cost_axis")
        fig_cost = charts.cost_frontier(board, axis, summary["metric"], summary.get("best_id"))
        st.plotly_chart(fig_cost, width="stretch", key="results.cost")
        st.caption("Each point is a candidate, at its val score and its cost per call measured from its own calls on "
                   "the val examples it was scored on; the dotted line is the Pareto front (no candidate is both "
                   "cheaper and better than one on it); the ring is the result. Hover for n and the 95% CI.")
        ui.chart_exports(fig_cost, f"{run_id}-cost", "results.cost")
    else:
        st.caption("No cost measured yet: costs come from the calls that scored each candidate.")
st.download_button("Candidates as CSV", board.drop(columns=["meta_prompt"]).to_csv(index=False), file_name=f"{run_id}-candidates.csv",
                   mime="text/csv", key="results.csv")

board_ids, result_id = board["id"].tolist(), summary.get("best_id")
starts = set(board.loc[board["proposer"] == "baseline", "id"])
pick = st.selectbox(  # opens on the result: its prompt, its diff against the baseline, its errors
    "Look at one prompt", board_ids, index=board_ids.index(result_id) if result_id in board_ids else 0,
    format_func=lambda i: f"#{i}" + (" · the result" if i == result_id else "") + (" · baseline" if i in starts else ""),
    key=f"results.pick.{run_id}")
row = board[board["id"] == pick].iloc[0]
base = results.baseline_of(board)
d1, d2 = st.columns(2)
d1.markdown("**Prompt**")
d1.code(row["text"], language="text")
prompt = PromptTemplate.from_record(row.to_dict())
if prompt.demos:
    how = f"each input is shown its {prompt.similar_k} nearest of these" if prompt.similar_k else "shown with every input"
    with d1.expander(f"{len(prompt.demos)} demos ({prompt.demo_format}; {how})"):
        st.dataframe(pd.DataFrame([{"input": d.text, "label": d.label} for d in prompt.demos]), hide_index=True)
d2.markdown("**Diff against the baseline**")
d2.code(review.diff("" if base is None else base["text"], str(row["text"]), "baseline", f"#{pick}", context=3)
        or "(same as the baseline)", language="diff")
ds, spec, metric = results.run_setup(store, run_id)
if pd.notna(row["val_score"]):
    val_key = ui.score_candidate(run_id, int(pick), "val", ds, spec, metric)
    if ui.workers()[val_key].running:  # model calls to make: they go on in the worker, never in this render
        ui.wait_for((val_key,), f"Scoring #{pick} on val (cached calls are free)", bar=True)
    elif (res := ui.take_result(val_key)) is not None:
        if res.calls:
            st.caption(f"({res.calls} calls were not cached and were made now)")
        wrong = results.misses(res)
        if res.labels:
            h1, h2 = st.columns([1, 2])
            h1.plotly_chart(charts.confusion_heatmap(res.confusion(), f"#{pick} on val"), width="stretch",
                            key="results.cm")
            h2.markdown(f"**Errors on val** ({len(wrong)} of {res.n})")
            h2.dataframe(in_words(wrong), hide_index=True, width="stretch")
        else:
            st.markdown(f"**Replies without full marks on val** ({len(wrong)} of {res.n}; lowest first"
                        f"{'; detail: ' + res.metric.detail_means if res.metric.detail_means else ''})")
            st.dataframe(in_words(wrong), hide_index=True, width="stretch")
else:
    n = row["n_scored"]
    if row["status"] == "gated" and n == n and n is not None:
        st.info(f"This candidate was stopped after {n:.0f} val examples (the race, or the minibatch gate): it could "
                "not beat the leader there, so it has no full val score.")
    elif row["status"] == "over budget":
        st.info("The budget ran out before this candidate had a full val score.")
    elif row["status"] == "over ceiling":
        st.info("This candidate costs more per call than the run's cost ceiling (see its tokens and latency on the "
                "leaderboard), so it was dropped after its first rung.")
    else:
        st.info("This candidate has no val score yet.")

# --- take it out, or score it elsewhere --------------------------------------------------------------
st.markdown(f"**Take #{pick} into your code** (the messages and parameters promptlab scored; never an API key)")
try:
    stored = export.stored_prompt(store, run_id, int(pick))
    cols = st.columns(4)
    for col, (fmt, what) in zip(cols, [("text", "Text"), ("messages", "Chat messages (JSON)"),
                                       ("python", "Python script (litellm)"), ("promptfoo", "promptfoo folder (zip)")]):
        try:
            name, data = export.download(stored, fmt)
            col.download_button(what, data, file_name=name, key=f"results.export.{fmt}", width="stretch")
        except PromptlabError as exc:
            col.caption(str(exc))
except PromptlabError as exc:
    ui.error_box(exc)
    stored = None

if stored is not None:
    with st.expander(f"Score #{pick} on another dataset or model"):
        all_models = ui.model_choices()
        names = ui.datasets_table()["name"].tolist()
        e1, e2, e3 = st.columns([2, 2, 1])
        other_ds = e1.selectbox("Dataset", names, index=names.index(ds.name) if ds.name in names else 0,
                                key="results.elsewhere.dataset")
        model_names = list(all_models)
        own = next((n for n, m in all_models.items() if m.model == spec.model), None)
        other_model = e2.selectbox("Model", model_names, index=model_names.index(own) if own in model_names else 0,
                                   key="results.elsewhere.model")
        other_split = e3.selectbox("Split", ["test", "val", "train", "all"], key="results.elsewhere.split")
        elsewhere_key = f"elsewhere:{run_id}"
        if st.button("Score it", key="results.elsewhere.go"):
            try:
                target_ds = ui.dataset(other_ds)
                request = jobs.ElsewhereRequest(run_id, int(pick), target_ds, all_models[other_model], other_split)
                ui.score_elsewhere(elsewhere_key, request)
            except PromptlabError as exc:
                ui.error_box(exc)

        @st.fragment(run_every=1.5)
        def elsewhere_result() -> None:
            result = ui.worker_result(elsewhere_key, "Scoring it (cached calls are free)")
            if result is not None:
                st.success(result["line"])
                for note in result["notes"]:
                    st.caption(f"Note: {note}")

        elsewhere_result()

# --- prompts x models ------------------------------------------------------------------------------
st.subheader("Prompts × models: the best prompt for each model")
st.caption("The top prompts of the chosen runs, each scored by each chosen model on the same test examples "
           "(cached calls are free). Does a prompt found for one model transfer to another?")
mx1, mx2, mx3 = st.columns([3, 3, 1])
mx_runs = mx1.multiselect("Runs", ids, default=[run_id], format_func=lambda i: labels.get(i, i), key=f"results.matrix.runs.{run_id}")
mx_models = mx2.multiselect("Models", list(ui.model_choices()), key="results.matrix.models")
mx_top = mx3.number_input("Prompts per run", 1, 5, 1, key="results.matrix.top")
matrix_key = "matrix:" + ",".join(mx_runs)
if st.button("Score the matrix", key="results.matrix.go", disabled=not (mx_runs and mx_models)):
    all_models = ui.model_choices()
    request = jobs.MatrixRequest(tuple(mx_runs), tuple(all_models[m] for m in mx_models), top=int(mx_top))
    ui.score_matrix(matrix_key, request)


@st.fragment(run_every=1.5)
def matrix_view() -> None:
    result = ui.worker_result(matrix_key, "Scoring the matrix (cached calls are free)")
    if result is None:
        return
    fig = charts.matrix_heatmap(result.cells, result.metric)
    st.plotly_chart(fig, width="stretch", key="results.matrix.chart")
    ui.chart_exports(fig, f"{run_id}-matrix", "results.matrix")
    for line in jobs.matrix_lines(result) + [f"Note: {n}" for n in result.notes]:
        st.caption(line)
    st.dataframe(in_words(result.transfer), hide_index=True, width="stretch")


matrix_view()

# --- two runs side by side -------------------------------------------------------------------------
st.subheader("Two runs side by side")
other = st.selectbox("Compare with", [i for i in ids if i != run_id], index=None, format_func=labels.get,
                     placeholder="choose a run…", key="results.other")
if other:
    s2 = results.summarize(store, other)
    st.dataframe(in_words(results.side_by_side([summary, s2])), hide_index=True, width="stretch")
    l, r = st.columns(2)
    l.plotly_chart(fig, width="stretch", key="results.left")
    r.plotly_chart(charts.score_trajectories(store.candidates(other), metric=s2["metric"], title=f"{other}"),
                   width="stretch", key="results.right")

# --- report ----------------------------------------------------------------------------------------
st.subheader("Report")
report = report.markdown_report(store, run_id)
st.download_button("Markdown report for a team review", report, file_name=f"{run_id}-report.md", mime="text/markdown",
                   key="results.report")
with st.expander("Preview the report"):
    st.markdown(report)
