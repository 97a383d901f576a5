"""The grading panel: the analyst grades a prompt's outputs by hand and checks an LLM judge against the grades.
Every action calls promptlab.grading, as the CLI's `grade` and `judge-check` do; fetching outputs and the judge
check run as worker jobs, never in the page."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from promptlab import grading as G
from promptlab.dashboard.job_registry import jobs, start_job, wait_for
from promptlab.errors import PromptlabError
from promptlab.evaluate import PromptTemplate
from promptlab.text import format_ci, format_score as fmt


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
    m2.metric("95% CI", format_ci(graded["ci"]) if graded["n"] else "n/a")
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
