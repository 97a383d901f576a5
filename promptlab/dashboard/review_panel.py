"""The review panel: the analyst's decisions on a paused round (keep, discard, edit, add, re-score, continue, stop).
Every action calls promptlab.review, as the CLI's `review` does; re-scoring runs in a worker, never in the page."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from promptlab import review as R
from promptlab.dashboard.worker_registry import running, wait_for, workers
from promptlab.dashboard.readers import clear_readers
from promptlab.dashboard.workers import rescore, start_run
from promptlab.errors import PromptlabError
from promptlab.text import format_ci, format_score as fmt


def round_review(store, run_id: str) -> None:
    """The paused round: new candidates side by side, the decisions so far, and what the analyst can do."""
    try:
        view = R.round_view(store, run_id)
    except PromptlabError as exc:
        st.error(str(exc))
        return
    r = view["round"]
    _round_intro(view)
    cands = view["candidates"]
    decided = view["decisions"]
    latest = {d["candidate_id"]: d for d in decided if d["action"] in ("keep", "discard", "edit")}
    if not cands:
        st.info("This round produced no usable candidate: add a prompt of your own, or continue.")
    for col, c in zip(st.columns(max(1, len(cands))), cands):
        _candidate_card(col, c, latest.get(c["id"]))
        _candidate_actions(store, run_id, r, col, c)
    with st.expander("Add a prompt of your own", expanded=not cands):
        _add_own_prompt(store, run_id, r, decided)
    if decided:
        _decisions_table(decided)
    busy = _rescoring(run_id)
    _close_round_buttons(store, run_id, r, busy)


def _round_intro(view: dict) -> None:
    """What the round asks of the analyst, and the current best with its text."""
    st.subheader(f"Round {view['round']} is waiting for your review")
    st.caption(f"We measure {view['metric']}. Keep or discard each new candidate, edit one (saved as a new candidate "
               "with its parent), add a prompt of your own, re-score one on more data, then continue. Candidates you "
               "leave undecided follow the rule: kept when scored in full on val, else left out. Every decision is "
               "stored with who made it.")
    best = view["best"]
    if best:
        st.markdown(f"**Current best #{best['id']}** ({best['proposer']}): val {fmt(best['val'])} {format_ci(best['ci'])}, "
                    f"n={best['n_val']}")
        st.code(best["text"], language="text")


def _candidate_card(col, c: dict, decision: dict | None) -> None:
    """One new candidate in its column: who wrote it, its score, a constant-answer warning, its diff against the
    best, the analyst's latest keep/discard/edit of it, and the outputs where it differs from the best."""
    col.markdown(f"**#{c['id']}** by `{c['proposer']}` ({c['family']})")
    if c["val"] is not None:
        col.metric("val", fmt(c["val"]), help="Scored on the whole val split.")
        col.caption(f"95% CI {format_ci(c['ci'])}, n={c['n_val']}")
    else:
        col.metric("minibatch", fmt(c["minibatch"]))
        col.caption(f"{c['status']}: the gate did not score it on all of val (keeping it does)")
    if c.get("constant"):
        col.warning(f"Constant answer: it says '{c['constant']}' to at least 95% of the val examples it saw.")
    col.code(c["diff"] or "(same text as the best)", language="diff")
    if decision is not None:
        verb = {"keep": "kept", "discard": "discarded", "edit": "edited (a new candidate)"}[decision["action"]]
        col.markdown(f":{'green' if decision['action'] == 'keep' else 'orange'}-badge[{verb} by {decision['who']}]")
    if c["outputs"]:
        col.markdown("Where its outputs differ from the best's:")
        col.dataframe(pd.DataFrame(c["outputs"])[["input", "gold", "best", "candidate"]].rename(
            columns={"gold": "expected"}), hide_index=True)


def _candidate_actions(store, run_id: str, r: int, col, c: dict) -> None:
    """Keep, Discard and Re-score (in a worker) buttons under a candidate, and an editor saving a new one."""
    b1, b2, b3 = col.columns(3)
    if b1.button("Keep", key=f"rv.keep.{run_id}.{r}.{c['id']}"):
        _decide(store, run_id, "keep", c["id"])
    if b2.button("Discard", key=f"rv.discard.{run_id}.{r}.{c['id']}"):
        _decide(store, run_id, "discard", c["id"])
    if b3.button("Re-score", key=f"rv.rescore.{run_id}.{r}.{c['id']}", help="Score on train and val together "
                 "(more examples, a narrower CI). Test stays held out for the final, honest comparison."):
        rescore(run_id, c["id"])
        st.toast(f"Re-scoring #{c['id']} on train+val…")
    with col.expander("Edit this prompt"):
        edited = st.text_area("Your version", c["text"], height=140, key=f"rv.edit.{run_id}.{r}.{c['id']}")
        if st.button("Save as a new candidate", key=f"rv.edit_save.{run_id}.{r}.{c['id']}"):
            _decide(store, run_id, "edit", c["id"], edited)


def _add_own_prompt(store, run_id: str, r: int, decided: list[dict]) -> None:
    """A box for the analyst's own prompt and the button adding it to the history."""
    n_added = sum(d["action"] == "add" for d in decided)  # a fresh box after each add, so a prompt is not added twice
    own = st.text_area("Prompt", "", height=120, key=f"rv.add.{run_id}.{r}.{n_added}",
                       placeholder="Write an instruction; {input} marks where the example goes (optional).")
    if st.button("Add to the history", key=f"rv.add_save.{run_id}.{r}"):
        _decide(store, run_id, "add", None, own)


def _decisions_table(decided: list[dict]) -> None:
    """The round's decisions so far, a re-score's result beside it."""
    st.markdown("**Decisions so far in this round**")
    st.dataframe(pd.DataFrame([{
        "action": d["action"], "candidate": d["candidate_id"], "who": d["who"], "note": d["note"],
        "result": (f"{fmt(d['detail'].get('score'))} {format_ci(d['detail'].get('ci') or (None, None))} "
                   f"n={d['detail'].get('n')} on {d['detail'].get('on')}") if d["detail"] else "",
    } for d in decided]), hide_index=True, width="stretch")


def _rescoring(run_id: str) -> bool:
    """Whether a re-score of this run is still running (then waited for); failed ones are said."""
    busy = running(f"rescore:{run_id}:")
    if busy:
        wait_for(tuple(busy), "Re-scoring on train+val… the result appears in the decisions table when it is done.")
    for k, w in workers().items():
        if k.startswith(f"rescore:{run_id}:") and w.error:
            st.error(w.error)
    return bool(busy)


def _close_round_buttons(store, run_id: str, r: int, busy: bool) -> None:
    """Continue and Stop the search (disabled while a re-score runs); either restarts the run's worker."""
    c1, c2, _ = st.columns([1, 1, 4])
    if c1.button("Continue", type="primary", key=f"rv.continue.{run_id}.{r}", disabled=busy):
        _close_round(store, run_id, "continue")
    if c2.button("Stop the search", key=f"rv.stop.{run_id}.{r}", disabled=busy,
                 help="No more rounds: the best prompts are scored on test and the run finishes."):
        _close_round(store, run_id, "stop")


def _close_round(store, run_id: str, action: str) -> None:
    """Record continue or stop, then run on in a worker and draw the page afresh."""
    if _decide(store, run_id, action, rerun=False):
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
