"""No example judges itself, no proposal copies an input, and every proposal asked for is scored (issue 31), with
scripted models: properties by construction."""
import pandas as pd
import pytest

import fakes
from conftest import sentiment_dataset
from promptlab import planning, report, results, runs
from promptlab.data import import_dataset
from promptlab.evaluate import dataset_params, model_key, stored_rows
from promptlab.models import make_spec
from promptlab.optimize import meta_prompt as P
from promptlab.optimize import proposals as R
from promptlab.optimize.arena import Arena
from promptlab.optimize.demos import stratified_demos
from promptlab.prompt import Demo, PromptTemplate

import numpy as np


def _truth(text: str) -> str:
    return "positive" if "great" in text else ("negative" if "awful" in text else "neutral")


def _copycat(messages, params):
    """Right only when one of its demos is the input itself (it copies that demo's answer); else 'positive'."""
    text = messages[-1]["content"]
    for i, m in enumerate(messages[:-1]):
        if m["role"] == "user" and m["content"] == text and i + 1 < len(messages) - 1:
            return messages[i + 1]["content"]
    return "positive"


# --- nearest demos ---------------------------------------------------------------------------------------------

def test_nearest_demos_never_show_the_input_itself():
    pool = tuple(Demo(t, lab, idx=i) for i, (t, lab) in enumerate(
        [("great thing 1", "positive"), ("great thing 2", "positive"), ("awful thing 1", "negative")]))
    prompt = PromptTemplate("Label it.").with_demos(pool, "chat", similar_k=2)
    shown = prompt.demos_for("great thing 1")
    assert "great thing 1" not in {d.text for d in shown} and len(shown) == 2
    assert {d.text for d in prompt.demos_for("great thing 9")} == {"great thing 1", "great thing 2"}
    turns = prompt.render({}, "great thing 1", ("positive", "negative"))
    assert [m["content"] for m in turns[:-1] if m["role"] == "user"].count("great thing 1") == 0


def test_the_edits_stage_finds_the_failures_of_a_leader_with_nearest_demos(store, tmp_path):
    """The issue's case: the leader picks its nearest demos from a pool of every train row. Probed on train rows, it
    was shown each row itself and answered all of them right, so the edits stage saw "no errors". Now each probed
    row is not among its own demos: the critic reads real failures and the editor writes candidates."""
    ds = sentiment_dataset(store, tmp_path, neutral=40)
    pool = stratified_demos(ds.split("train"), ds, None if False else len(ds.split("train")), np.random.default_rng(0))
    start = PromptTemplate.from_text("Label the sentiment.").with_demos(pool, "chat", similar_k=3)
    tgt = make_spec(fakes.script("copycat", _copycat))
    critic = make_spec(fakes.script("copy-critic", lambda m, p: "Say what each label means."))
    editor = make_spec(fakes.script("copy-editor", lambda m, p: "<prompt>Label the sentiment: great is positive."
                                                                "</prompt>"))
    cfg = planning.make_config(ds, tgt, [editor], seed=1, strategy="gradient", rounds=1, baselines=[start],
                               critic=critic, editor=editor)
    s = runs.execute(store, runs.create_run(store, cfg))
    critique = next(x for x in store.steps(s["run_id"]) if x["kind"] == "critique")
    assert critique["n_errors"] > 0 and s["reason"] != "no errors"
    assert s["stages"][0]["candidates"] >= 1


def test_failures_are_probed_only_on_rows_that_are_not_the_prompts_own_demos(store, tmp_path):
    """A leader with fixed demos is probed (the gradient's failure sample, the arena's mistakes) only on train rows that
    are not among them; a pool prompt's rows stay (each is never shown itself)."""
    ds = sentiment_dataset(store, tmp_path, neutral=40)
    tgt = make_spec(fakes.script("copycat", _copycat))
    cfg = planning.make_config(ds, tgt, [tgt], strategy="arena", seed=1)
    _, ctx = planning.build(store, cfg, "probe")
    demos = stratified_demos(ctx.trainset, ds, 6, np.random.default_rng(1))
    fixed = PromptTemplate("Label it.").with_demos(demos)
    rows = ctx.probe_rows(fixed)
    assert not set(rows["idx"]) & {d.idx for d in demos} and len(rows) == len(ctx.trainset) - 6
    assert len(ctx.probe_rows(fixed.with_demos(demos, similar_k=2))) == len(ctx.trainset)
    # a demo whose input another train row repeats: that row is no probe either (it would be shown its own answer)
    other = ctx.trainset[~ctx.trainset["idx"].isin({d.idx for d in demos})].iloc[0]
    twin = PromptTemplate("Label it.").with_demos((Demo(other["text"], other["label"], idx=-1),))
    assert other["idx"] not in set(ctx.probe_rows(twin)["idx"])
    from promptlab.optimize.pool import Cand
    best = Cand(1, 0, "Label it.", fixed, "baseline")
    arena = Arena(proposers=(tgt,), baselines=(fixed,))
    assert not set(arena._mistake_pool(ctx, best, ((), "chat", 0, "tfidf"))["idx"]) & {d.idx for d in demos}
    # and in a run: the gradient's probes of a fixed-demo start never read its demos' rows
    editor = make_spec(fakes.script("copy-editor2", lambda m, p: "<prompt>Label the sentiment.</prompt>"))
    run_cfg = planning.make_config(ds, tgt, [editor], seed=1, strategy="gradient", rounds=2, baselines=[fixed],
                                   critic=editor, editor=editor)
    run_id = runs.create_run(store, run_cfg)
    runs.execute(store, run_id)
    key = model_key(tgt, dataset_params(tgt, ds))
    read = stored_rows(store, fixed.id, key, ds, ctx.trainset["idx"].tolist())
    assert len(read) and not set(read["example_idx"]) & {d.idx for d in demos}


def test_demos_are_never_drawn_from_a_train_row_whose_input_is_also_a_val_or_test_input(store, tmp_path):
    """A duplicate input across splits would show a val or test example its own answer as a demo."""
    rows = ["text,label"] + [f"great thing {i},positive" for i in range(30)] + [f"awful thing {i},negative" for i in range(30)]
    rows += ["great thing 0,positive"] * 6 + ["awful thing 0,negative"] * 6  # duplicates land in every split
    path = tmp_path / "dup.csv"
    path.write_text("\n".join(rows))
    ds = import_dataset(store, path)[0]
    tgt = make_spec(fakes.script("copycat", _copycat))
    _, ctx = planning.build(store, planning.make_config(ds, tgt, [], strategy="fewshot"), "probe")
    held = set(ctx.valset["text"]) | set(ctx.confirmset["text"]) | set(ctx.testset["text"])
    assert {"great thing 0", "awful thing 0"} & held and {"great thing 0", "awful thing 0"} & set(ctx.trainset["text"])
    assert not set(ctx.demo_rows["text"]) & held and len(ctx.demo_rows) < len(ctx.trainset)
    s = runs.execute(store, runs.create_run(store, planning.make_config(ds, tgt, [], strategy="fewshot", rounds=2)))
    used = {d["text"] for demos in store.candidates(s["run_id"])["demos"] for d in demos}
    assert used and not used & held


# --- copied inputs ---------------------------------------------------------------------------------------------

REVIEWS = [("the valve turns weaker when the drink does not fly out of the bottle", "negative"),
           ("a lovely little machine that makes my morning coffee taste so much better", "positive"),
           ("it arrived on a tuesday in a plain brown box with the manual inside", "neutral")]


def _reviews(store, tmp_path):
    rows = ["text,label"] + [f'"{t} {i}",{lab}' for i in range(30) for t, lab in REVIEWS]
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(rows))
    return import_dataset(store, path)[0]


def test_copies_input_finds_a_long_run_of_an_inputs_words():
    index = R.input_index(["the valve turns weaker when the drink does not fly out", "short one here now",
                           "tiny"])
    assert R.copies_input("Negative: when the drink does not fly out, the valve turns weaker.", index) is False
    assert R.copies_input("Negative: The valve turns weaker when the drink does not fly!", index)
    assert R.copies_input("Neutral: for example 'Short one here now'.", index)  # a short input, whole
    assert not R.copies_input("Answer tiny.", index)  # under four words: too common to count
    assert not R.copies_input("anything", None)


def test_a_proposal_that_copies_an_input_is_dropped_counted_and_proposers_are_told(store, tmp_path):
    ds = _reviews(store, tmp_path)
    copied = (f"<prompt>Negative: {REVIEWS[0][0]} 3.\nAnswer with the label name only.</prompt>"
              "<prompt>Say which label fits the feeling of the review.\nAnswer with the label name only.</prompt>")
    tgt = make_spec(fakes.script("reviews-target", lambda m, p: "positive"))
    prop = make_spec(fakes.script("copy-prop", lambda m, p: copied))
    start = PromptTemplate.from_text(f"Negative means like: {REVIEWS[0][0]} 1. Answer with one label.")
    cfg = planning.make_config(ds, tgt, [prop], seed=1, strategy="arena", rounds=1, candidates=2, baselines=[start])
    s = runs.execute(store, runs.create_run(store, cfg))
    made = [x for x in store.steps(s["run_id"]) if x["kind"] == "proposal_made"]
    assert made[0]["dropped"] == {"copies_input": 1} and len(made[0]["accepted"]) == 1
    assert s["stages"][0]["copied"] == 1 and "1 dropped for copying an input" in report.stages_line(s["stages"])
    assert "Never copy a text from the examples" in made[0]["meta_prompt"]
    cands = store.candidates(s["run_id"])
    assert cands.loc[cands["proposer"] == "baseline", "text"].iloc[0] == start.system  # the analyst's own: kept


# --- every proposal asked for is scored ------------------------------------------------------------------------

def test_a_round_starts_only_when_its_share_can_race_what_it_asks_for(store, tmp_path):
    """The instruction stage's share pays for one round, not two: the second round is not started (its proposals would
    be written and never scored), the stage says why, and its calls go to the next stage. No candidate is never
    scored."""
    ds = sentiment_dataset(store, tmp_path, neutral=40)

    def prop(messages, params):
        k = abs(hash(messages[-1]["content"])) % 997
        return "".join(f"<prompt>Pick the label, variant {k}-{i}.</prompt>" for i in range(4))

    tgt = make_spec(fakes.script("share-target", lambda m, p: "positive"))
    cfg = planning.make_config(ds, tgt, [make_spec(fakes.script("share-prop", prop))], seed=1, rounds=5, budget=330,
                               minibatch_size=6, instructions_share=0.2, demos_share=0.8, demo_instructions_share=0.0,
                               edits_share=0.0)
    s = runs.execute(store, runs.create_run(store, cfg))
    first = s["stages"][0]
    assert first["stage"] == "instructions" and first["never_scored"] == 0 and first["proposer_calls"] >= 1
    assert first["ended"] == "its share could not race another round's proposals"
    assert "why it ended" in results.stage_table(s["stages"]).columns
    assert all(st["never_scored"] == 0 for st in s["stages"])
    cands = store.candidates(s["run_id"])
    assert not (cands["status"] == "over budget").any()
    started = [x for x in store.steps(s["run_id"]) if x["kind"] == "round_started" and x["proposers"] != ["fewshot"]]
    assert len(started) == first["proposer_calls"]  # every round started wrote and raced its proposals
