"""Demonstrations: how they render, how they are chosen, and the arena's `demos` option."""
import numpy as np
import pytest

import fakes
from conftest import sentiment_dataset
from promptlab import planning, report, runs
from promptlab.prompt import Demo, PromptError, PromptTemplate
from promptlab.models import make_spec
from promptlab.optimize.demos import random_demos, stratified_demos


@pytest.fixture
def dataset(store, tmp_path):
    return sentiment_dataset(store, tmp_path, neutral=15, neutral_label="Neutral")


DEMOS = (Demo("good stay", "positive"), Demo("dirty room", "negative"))


def test_chat_demos_render_as_turns_before_the_input():
    t = PromptTemplate("Label it: {labels}.", "Text: {input}", DEMOS)
    msgs = t.render({}, "fine hotel", ("positive", "negative"))
    assert msgs == [
        {"role": "system", "content": "Label it: positive, negative."},
        {"role": "user", "content": "Text: good stay"}, {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "Text: dirty room"}, {"role": "assistant", "content": "negative"},
        {"role": "user", "content": "Text: fine hotel"},
    ]


def test_inline_demos_follow_the_instruction():
    t = PromptTemplate("Label it.", "{input}", DEMOS, "inline")
    msgs = t.render({}, "fine hotel", ("positive", "negative"))
    assert msgs[0]["content"] == "Label it.\n\nExamples:\n\nInput: good stay\nAnswer: positive\n\nInput: dirty room\nAnswer: negative"
    assert msgs[1:] == [{"role": "user", "content": "fine hotel"}]


def test_demo_fields_fill_column_placeholders():
    t = PromptTemplate("", "Q: {question}\nA?", (Demo("x", "yes", (("question", "is it?"),)),))
    msgs = t.render({"question": "really?"}, "y", ("yes", "no"))
    assert msgs[0]["content"] == "Q: is it?\nA?" and msgs[-1]["content"] == "Q: really?\nA?"


def test_ids_change_with_demos_but_not_without_them():
    plain = PromptTemplate("Label it.")
    assert plain.id == PromptTemplate("Label it.", "{input}", (), "inline").id  # old ids stay valid
    assert plain.with_demos(DEMOS).id != plain.id
    assert plain.with_demos(DEMOS).id != plain.with_demos(DEMOS, "inline").id
    assert plain.with_demos(DEMOS).id != plain.with_demos(DEMOS[::-1]).id  # order matters to a model
    rec = plain.with_demos(DEMOS, "inline").to_record()
    assert PromptTemplate.from_record(rec) == plain.with_demos(DEMOS, "inline")
    with pytest.raises(PromptError, match="chat, inline"):
        PromptTemplate("x", demo_format="bubbles")


def test_stratified_demos_cover_every_label_from_train_only(dataset):
    train = dataset.split("train")
    for seed in range(5):
        demos = stratified_demos(train, dataset, None, np.random.default_rng(seed))
        assert sorted(d.label for d in demos) == sorted(dataset.labels)  # one per label, display forms
        assert {d.idx for d in demos} <= set(train["idx"])
        six = stratified_demos(train, dataset, 6, np.random.default_rng(seed))
        assert len(six) == 6 and all(six[i].label != six[i + 1].label for i in range(5))  # interleaved
    a = stratified_demos(train, dataset, 4, np.random.default_rng(1))
    assert a == stratified_demos(train, dataset, 4, np.random.default_rng(1))  # seeded
    assert len(random_demos(train, dataset, 5, np.random.default_rng(0))) == 5
    assert random_demos(train, dataset, 0, np.random.default_rng(0)) == ()


def _target(messages, params):
    """Right only when it has seen one demo of each label (as chat turns), else always 'positive'."""
    text = messages[-1]["content"]
    answers = {m["content"] for m in messages if m["role"] == "assistant"}
    if len(answers) >= 3:
        return "positive" if "great" in text else ("negative" if "awful" in text else "Neutral")
    return "positive"


def _proposer(messages, params):
    return "<prompt>Decide the sentiment. Answer with the label only.</prompt><prompt>Read carefully and label it.</prompt>"


def test_arena_with_demos_scores_the_baseline_both_ways_and_attaches_demos(store, dataset):
    cfg = planning.make_config(dataset, make_spec(fakes.script("demo-target", _target)),
                           [make_spec(fakes.script("demo-prop", _proposer))], seed=3, rounds=1, minibatch_size=8,
                           demos="per-label", strategy="arena", confirm=0.0)
    assert planning.projection(store, cfg)["baseline_calls"] == 2 * len(dataset.split("val"))
    run_id = runs.create_run(store, cfg)
    summary = runs.execute(store, run_id)
    cands = store.candidates(run_id)
    base = cands[cands["proposer"] == "baseline"]
    assert [len(d) for d in base["demos"]] == [0, 3]  # the plain baseline, then the same with demos
    assert summary["baseline_val"] < 0.5 and base.iloc[1]["val_score"] == 1.0
    proposed = cands[cands["proposer"] != "baseline"]
    assert len(proposed) and all(len(d) == 3 for d in proposed["demos"])
    train_idx = set(dataset.split("train")["idx"])
    assert all(d["idx"] in train_idx for demos in cands["demos"] for d in demos)
    assert summary["best_val"] == 1.0 and len(summary["best_demos"]) == 3
    assert summary["baseline_test"] is not None and summary["best_test"] == 1.0
    assert "[+3 demos]" in report.markdown_report(store, run_id)


def test_bad_demo_settings_are_refused(store, dataset):
    from promptlab.errors import PromptlabError

    spec = make_spec(fakes.script("demo-target", _target))
    with pytest.raises(PromptlabError, match="per-label"):
        planning.make_config(dataset, spec, [spec], demos="all of them")
    with pytest.raises(PromptlabError, match="chat or inline"):
        planning.make_config(dataset, spec, [spec], demos=2, demo_format="bubbles")
