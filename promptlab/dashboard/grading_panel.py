"""The grading panel: the analyst grades a prompt's outputs by hand and checks an LLM judge against the grades.
Every action calls promptlab.grading, as the CLI's `grade` and `judge-check` do; fetching outputs and the judge
check run in workers, never in the page."""
from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import streamlit as st

from promptlab import grading as G
from promptlab.columns import in_words
from promptlab.dashboard.worker_registry import wait_for, workers
from promptlab.dashboard.workers import check_judge, grade_outputs
from promptlab.errors import PromptlabError
from promptlab.prompt import PromptTemplate
from promptlab.text import format_ci, format_score as fmt


class _GradingChoices(NamedTuple):
    """What the analyst chose above the outputs: the prompt, which outputs, the scale, and how to grade."""
    text: str
    split: str
    limit: int
    scale: str
    blind: bool
    grader: str


def grading_panel(store, ds, spec, default_prompt: str, judge_models: dict) -> None:
    """Grade a prompt's outputs one at a time from the keyboard, see the human score, check a judge."""
    choices = _grading_choices(default_prompt)
    worker_key = f"grade:{ds.name}"
    if st.button("Get outputs to grade", key="grade.load"):
        _start_fetching(store, ds, spec, choices, worker_key)
    batch = _fetched_batch(worker_key, choices.scale)
    if batch is None:
        return
    graded = G.summary(store, ds.id, batch.prompt_id, batch.model_key, choices.scale, batch.pairs)
    todo = _ungraded(store, ds, batch, choices.scale)
    m1, m2, m3 = st.columns(3)
    m1.metric("Human score (0–1)", fmt(graded["score"]), help="The mean grade scaled to 0–1.")
    m2.metric("95% CI", format_ci(graded["ci"]) if graded["n"] else "n/a")
    m3.metric("Graded (n)", f"{graded['n']} / {len(batch.items)}")
    if not choices.blind:
        st.caption(f"Prompt: {' '.join((batch.prompt.system + ' ' + batch.prompt.user).split())[:300]}")
    if todo:
        _grade_next(store, batch, todo[0], len(todo), choices)
    else:
        st.success(f"All {len(batch.items)} outputs are graded.")
    with st.expander("Check an LLM judge against your grades"):
        _judge_check(store, ds, spec, batch, choices, judge_models, bool(graded["n"]))


def _grading_choices(default_prompt: str) -> _GradingChoices:
    """The widgets above the outputs, read."""
    c1, c2, c3, c4 = st.columns([4, 1, 1, 1])
    text = c1.text_area("Prompt whose outputs you grade", default_prompt, height=100, key="grade.prompt")
    split = c2.selectbox("Split", ["val", "train", "test"], key="grade.split")
    limit = c3.number_input("Outputs", 1, 500, 10, key="grade.limit")
    scale = c4.radio("Scale", list(G.SCALES), index=1, key="grade.scale")
    c5, c6 = st.columns([1, 3])
    blind = c5.checkbox("Hide the prompt while grading", value=True, key="grade.blind",
                        help="Knowing which prompt wrote an output can sway a grade; outputs are also shuffled.")
    grader = c6.text_input("Your name (stored with each grade)", "analyst", key="grade.grader")
    return _GradingChoices(text, split, int(limit), scale, blind, grader)


def _start_fetching(store, ds, spec, choices: _GradingChoices, worker_key: str) -> None:
    """Start the worker that produces the outputs to grade (from the top again); a prompt that does not fit the
    dataset is said instead."""
    try:
        prompt = PromptTemplate.from_text(choices.text)
        prompt.check(ds.input_cols)
        grade_outputs(worker_key, ds, spec, prompt, choices.split, choices.limit, choices.scale)
        st.session_state.pop("grade.pos", None)
    except PromptlabError as exc:
        st.error(str(exc))


def _fetched_batch(worker_key: str, scale: str):
    """The outputs fetched on this scale (a grading.Batch), or None after saying why there are none to grade yet
    (nothing fetched, still fetching, failed, or fetched for another scale)."""
    worker = workers().get(worker_key)
    if worker is None:
        return None
    if worker.running:
        wait_for((worker_key,), "Producing the outputs (calls already cached are free)", bar=True)
        return None
    if worker.error:
        st.error(worker.error)
        return None
    if worker.result.scale != scale:
        st.info(f"These outputs were fetched for the {worker.result.scale} scale: press 'Get outputs to grade' again.")
        return None
    return worker.result


def _ungraded(store, ds, batch, scale: str) -> list:
    """The batch's items not yet graded on this scale, in the batch's order."""
    mine = store.grades(ds.id, batch.prompt_id, batch.model_key)
    done = {(int(i), h) for i, h, sc in zip(mine["example_idx"], mine["output_hash"], mine["scale"]) if sc == scale}
    return [it for it in batch.items if (it.example_idx, it.output_hash) not in done]


def _grade_next(store, batch, it, n_left: int, choices: _GradingChoices) -> None:
    """One output with its input (and reference), a note box, and a button per grade, each with its keyboard key;
    a press records the grade and shows the next output."""
    lo, hi = G.scale_range(choices.scale)
    st.markdown(f"**Output {len(batch.items) - n_left + 1} of {len(batch.items)}**")
    st.markdown("Input")
    st.code(it.input, language="text")
    if it.reference:
        st.markdown("Reference answer")
        st.code(it.reference, language="text")
    st.markdown("Output")
    st.code(it.output or "(empty)", language="text")
    note = st.text_input("Note (optional)", "", key=f"grade.note.{it.example_idx}.{it.output_hash}")
    keys = [("Pass", 1.0, "P"), ("Fail", 0.0, "F")] if choices.scale == "pass/fail" else \
        [(str(v), float(v), str(v)) for v in range(lo, hi + 1)]
    for col, (label, value, key) in zip(st.columns(len(keys)), keys):
        if col.button(label, key=f"grade.btn.{label}.{it.example_idx}.{it.output_hash}", shortcut=key,
                      width="stretch"):
            G.record(store, batch, it, value, choices.scale, note=note, grader=choices.grader.strip() or "analyst",
                     blind=choices.blind)
            st.rerun()
    st.caption("Keyboard: " + (", ".join(k for _, _, k in keys)) + " grade and move to the next output.")


def _judge_check(store, ds, spec, batch, choices: _GradingChoices, judge_models: dict, any_graded: bool) -> None:
    """Pick a judge and a rubric, check the judge against the grades in a worker, and show the agreement."""
    judge_name = st.selectbox("Judge model", list(judge_models), key="grade.judge")
    rubric = st.text_area("Rubric", (ds.scoring or {}).get("judge", {}).get("rubric", ""), height=100, key="grade.rubric")
    if st.button("Check the judge", key="grade.calibrate", disabled=not any_graded):
        check_judge(f"calibrate:{ds.name}", ds, spec, batch.prompt, choices.split, choices.limit, choices.scale,
                    judge_models[judge_name], rubric)
    cal = workers().get(f"calibrate:{ds.name}")
    if cal is not None and not cal.running:
        if cal.error:
            st.error(cal.error)
        elif cal.result:
            _show_agreement(cal.result)
    elif cal is not None:
        wait_for((f"calibrate:{ds.name}",), "The judge is grading…")


def _show_agreement(stats: dict) -> None:
    """The judge's agreement with the analyst's grades (grading.calibrate's stats), then each pair."""
    a1, a2, a3 = st.columns(3)
    a1.metric("Exact agreement", "n/a" if stats["exact"] is None else f"{stats['exact']:.0%}")
    a2.metric("Within one point", "n/a" if stats["within_one"] is None else f"{stats['within_one']:.0%}")
    a3.metric("Cohen's kappa", fmt(stats["kappa"]))
    st.caption(f"On {stats['n']} outputs you graded: {G.kappa_reading(stats)}.")
    st.dataframe(in_words(pd.DataFrame(stats["pairs"])), hide_index=True, width="stretch")
