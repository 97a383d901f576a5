"""The panels for the human in the loop: deciding a paused round, and grading outputs by hand.

Thin: every action calls promptlab.review or promptlab.grading (the same functions as the CLI), and
anything slow (re-scoring, producing outputs, the judge check) runs as a worker job, never in the page.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from promptlab import grading as G
from promptlab import review as R
from promptlab.dashboard.job_registry import jobs, running, start_job, wait_for
from promptlab.dashboard.readers import clear_readers
from promptlab.dashboard.workers import start_run
from promptlab.errors import PromptlabError
from promptlab.evaluate import PromptTemplate
from promptlab.text import format_score as fmt


def _ci(ci) -> str:
    lo, hi = ci
    return f"[{fmt(lo)}, {fmt(hi)}]"


def round_review(store, run_id: str) -> None:
    """The paused round: new candidates side by side, the decisions so far, and what the analyst can do."""
    try:
        view = R.round_view(store, run_id)
    except PromptlabError as exc:
        st.error(str(exc))
        return
    r = view["round"]
    st.subheader(f"Round {r} is waiting for your review")
    st.caption(f"We measure {view['metric']}. Keep or discard each new candidate, edit one (saved as a new candidate "
               "with its parent), add a prompt of your own, re-score one on more data, then continue. Candidates you "
               "leave undecided follow the rule: kept when scored in full on val, else left out. Every decision is "
               "stored with who made it.")
    best = view["best"]
    if best:
        st.markdown(f"**Current best #{best['id']}** ({best['proposer']}): val {fmt(best['val'])} {_ci(best['ci'])}, "
                    f"n={best['n_val']}")
        st.code(best["text"], language="text")
    cands = view["candidates"]
    decided = view["decisions"]
    latest = {d["candidate_id"]: d for d in decided if d["action"] in ("keep", "discard", "edit")}
    if not cands:
        st.info("This round produced no usable candidate: add a prompt of your own, or continue.")
    for col, c in zip(st.columns(max(1, len(cands))), cands):
        col.markdown(f"**#{c['id']}** by `{c['proposer']}` ({c['family']})")
        if c["val"] is not None:
            col.metric("val", fmt(c["val"]), help="Scored on the whole val split.")
            col.caption(f"95% CI {_ci(c['ci'])}, n={c['n_val']}")
        else:
            col.metric("minibatch", fmt(c["minibatch"]))
            col.caption(f"{c['status']}: the gate did not score it on all of val (keeping it does)")
        if c.get("constant"):
            col.warning(f"Constant answer: it says '{c['constant']}' to at least 95% of the val examples it saw.")
        col.code(c["diff"] or "(same text as the best)", language="diff")
        if (d := latest.get(c["id"])) is not None:
            verb = {"keep": "kept", "discard": "discarded", "edit": "edited (a new candidate)"}[d["action"]]
            col.markdown(f":{'green' if d['action'] == 'keep' else 'orange'}-badge[{verb} by {d['who']}]")
        if c["outputs"]:
            col.markdown("Where its outputs differ from the best's:")
            col.dataframe(pd.DataFrame(c["outputs"])[["input", "gold", "best", "candidate"]].rename(
                columns={"gold": "expected"}), hide_index=True)
        b1, b2, b3 = col.columns(3)
        if b1.button("Keep", key=f"rv.keep.{run_id}.{r}.{c['id']}"):
            _decide(store, run_id, "keep", c["id"])
        if b2.button("Discard", key=f"rv.discard.{run_id}.{r}.{c['id']}"):
            _decide(store, run_id, "discard", c["id"])
        if b3.button("Re-score", key=f"rv.rescore.{run_id}.{r}.{c['id']}", help="Score on train and val together "
                     "(more examples, a narrower CI). Test stays held out for the final, honest comparison."):
            start_job(f"rescore:{run_id}:{c['id']}", "rescore", lambda job, cid=c["id"]: R.rescore(store, run_id, cid))
            st.toast(f"Re-scoring #{c['id']} on train+val…")
        with col.expander("Edit this prompt"):
            edited = st.text_area("Your version", c["text"], height=140, key=f"rv.edit.{run_id}.{r}.{c['id']}")
            if st.button("Save as a new candidate", key=f"rv.edit_save.{run_id}.{r}.{c['id']}"):
                _decide(store, run_id, "edit", c["id"], edited)
    with st.expander("Add a prompt of your own", expanded=not cands):
        n_added = sum(d["action"] == "add" for d in decided)  # a fresh box after each add, so a prompt is not added twice
        own = st.text_area("Prompt", "", height=120, key=f"rv.add.{run_id}.{r}.{n_added}",
                           placeholder="Write an instruction; {input} marks where the example goes (optional).")
        if st.button("Add to the history", key=f"rv.add_save.{run_id}.{r}"):
            _decide(store, run_id, "add", None, own)
    if decided:
        st.markdown("**Decisions so far in this round**")
        st.dataframe(pd.DataFrame([{
            "action": d["action"], "candidate": d["candidate_id"], "who": d["who"], "note": d["note"],
            "result": (f"{fmt(d['detail'].get('score'))} {_ci(d['detail'].get('ci') or (None, None))} "
                       f"n={d['detail'].get('n')} on {d['detail'].get('on')}") if d["detail"] else "",
        } for d in decided]), hide_index=True, width="stretch")
    busy = running(f"rescore:{run_id}:")
    if busy:
        wait_for(tuple(busy), "Re-scoring on train+val… the result appears in the decisions table when it is done.")
    for k, j in jobs().items():
        if k.startswith(f"rescore:{run_id}:") and j.error:
            st.error(j.error)
    c1, c2, _ = st.columns([1, 1, 4])
    if c1.button("Continue", type="primary", key=f"rv.continue.{run_id}.{r}", disabled=bool(busy)):
        if _decide(store, run_id, "continue", rerun=False):
            start_run(run_id)
            clear_readers()
            st.rerun()
    if c2.button("Stop the search", key=f"rv.stop.{run_id}.{r}", disabled=bool(busy),
                 help="No more rounds: the best prompts are scored on test and the run finishes."):
        if _decide(store, run_id, "stop", rerun=False):
            start_run(run_id)
            clear_readers()
            st.rerun()


def _decide(store, run_id: str, action: str, cid: int | None = None, text: str | None = None, rerun: bool = True) -> bool:
    try:
        R.decide(store, run_id, action, cid, text)
    except PromptlabError as exc:
        st.error(str(exc))
        return False
    if rerun:
        st.rerun()
    return True


# --- grading outputs by hand -----------------------------------------------------------------------

def grading_panel(store, ds, spec, default_prompt: str, judge_models: dict) -> None:
    """Grade a prompt's outputs one at a time from the keyboard, see the human score, check a judge."""
    c1, c2, c3, c4 = st.columns([4, 1, 1, 1])
    text = c1.text_area("Prompt whose outputs you grade", default_prompt, height=100, key="grade.prompt")
    split = c2.selectbox("Split", ["val", "train", "test"], key="grade.split")
    limit = c3.number_input("Outputs", 1, 500, 10, key="grade.limit")
    scale = c4.radio("Scale", list(G.SCALES), index=1, key="grade.scale")
    c5, c6 = st.columns([1, 3])
    blind = c5.checkbox("Hide the prompt while grading", value=True, key="grade.blind",
                        help="Knowing which prompt wrote an output can sway a grade; outputs are also shuffled.")
    grader = c6.text_input("Your name (stored with each grade)", "analyst", key="grade.grader")
    job_key = f"grade:{ds.name}"
    if st.button("Get outputs to grade", key="grade.load"):
        try:
            prompt = PromptTemplate.from_text(text)
            prompt.check(ds.input_cols)
            start_job(job_key, "grade", lambda job: G.outputs(store, ds, spec, prompt, split=split, limit=int(limit),
                                                              scale=scale))
            st.session_state.pop("grade.pos", None)
        except PromptlabError as exc:
            st.error(str(exc))
    job = jobs().get(job_key)
    if job is None:
        return
    if job.running:
        wait_for((job_key,), "Producing the outputs (calls already cached are free)…")
        return
    if job.error:
        st.error(job.error)
        return
    batch = job.result
    if batch.scale != scale:
        st.info(f"These outputs were fetched for the {batch.scale} scale: press 'Get outputs to grade' again.")
        return
    lo, hi = G.scale_range(scale)
    graded = G.summary(store, ds.id, batch.prompt_id, batch.model_key, scale, batch.pairs)
    mine = store.grades(ds.id, batch.prompt_id, batch.model_key)
    done = {(int(i), h) for i, h, sc in zip(mine["example_idx"], mine["output_hash"], mine["scale"]) if sc == scale}
    todo = [it for it in batch.items if (it.example_idx, it.output_hash) not in done]
    m1, m2, m3 = st.columns(3)
    m1.metric("Human score (0–1)", fmt(graded["score"]), help="The mean grade scaled to 0–1.")
    m2.metric("95% CI", _ci(graded["ci"]) if graded["n"] else "n/a")
    m3.metric("Graded (n)", f"{graded['n']} / {len(batch.items)}")
    if not blind:
        st.caption(f"Prompt: {' '.join((batch.prompt.system + ' ' + batch.prompt.user).split())[:300]}")
    if todo:
        it = todo[0]
        st.markdown(f"**Output {len(batch.items) - len(todo) + 1} of {len(batch.items)}**")
        st.markdown("Input")
        st.code(it.input, language="text")
        if it.reference:
            st.markdown("Reference answer")
            st.code(it.reference, language="text")
        st.markdown("Output")
        st.code(it.output or "(empty)", language="text")
        note = st.text_input("Note (optional)", "", key=f"grade.note.{it.example_idx}.{it.output_hash}")
        keys = [("Pass", 1.0, "P"), ("Fail", 0.0, "F")] if scale == "pass/fail" else \
            [(str(v), float(v), str(v)) for v in range(lo, hi + 1)]
        for col, (label, value, key) in zip(st.columns(len(keys)), keys):
            if col.button(label, key=f"grade.btn.{label}.{it.example_idx}.{it.output_hash}", shortcut=key,
                          width="stretch"):
                G.record(store, batch, it, value, scale, note=note, grader=grader.strip() or "analyst", blind=blind)
                st.rerun()
        st.caption("Keyboard: " + (", ".join(k for _, _, k in keys)) + " grade and move to the next output.")
    else:
        st.success(f"All {len(batch.items)} outputs are graded.")
    with st.expander("Check an LLM judge against your grades"):
        names = list(judge_models)
        judge_name = st.selectbox("Judge model", names, key="grade.judge")
        rubric = st.text_area("Rubric", (ds.scoring or {}).get("judge", {}).get("rubric", ""), height=100, key="grade.rubric")
        if st.button("Check the judge", key="grade.calibrate", disabled=not graded["n"]):
            # In the worker: the batch's own calls come from the cache, but a split or count changed since
            # would call the model.
            start_job(f"calibrate:{ds.name}", "calibrate", lambda job: G.calibrate(
                store, G.outputs(store, ds, spec, batch.prompt, split=split, limit=int(limit), scale=scale),
                judge_models[judge_name], rubric, scale))
        cal = jobs().get(f"calibrate:{ds.name}")
        if cal is not None and not cal.running:
            if cal.error:
                st.error(cal.error)
            elif cal.result:
                stats = cal.result
                a1, a2, a3 = st.columns(3)
                a1.metric("Exact agreement", "n/a" if stats["exact"] is None else f"{stats['exact']:.0%}")
                a2.metric("Within one point", "n/a" if stats["within_one"] is None else f"{stats['within_one']:.0%}")
                a3.metric("Cohen's kappa", fmt(stats["kappa"]))
                st.caption(f"On {stats['n']} outputs you graded: {G.kappa_reading(stats)}.")
                st.dataframe(pd.DataFrame(stats["pairs"]), hide_index=True, width="stretch")
        elif cal is not None:
            wait_for((f"calibrate:{ds.name}",), "The judge is grading…")
