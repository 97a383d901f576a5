"""Prompt templates, reply-to-label mapping, and evaluation through the DuckDB call cache (scripted fakes)."""
import json
from pathlib import Path

import pytest

import fakes
from promptlab.data import import_dataset
from promptlab.evaluate import eval_params, evaluate, model_key
from promptlab.progress import Progress
from promptlab.prompt import PromptError, PromptTemplate
from promptlab.scoring.labels import parse_label
from promptlab.scoring.labels import parse_metric
from promptlab.models import RetryPolicy, make_spec

# --- templates -------------------------------------------------------------------------------------


def test_plain_instruction_becomes_system_and_input_the_user_message():
    p = PromptTemplate.from_text("Classify the sentiment. Labels: {labels}.")
    msgs = p.render({"text": "great"}, "great", ("pos", "neg"))
    assert msgs == [{"role": "system", "content": "Classify the sentiment. Labels: pos, neg."},
                    {"role": "user", "content": "great"}]


def test_placeholders_columns_and_literal_braces():
    p = PromptTemplate(system="Return JSON like {\"label\": ...}. Use {{input}} literally.",
                       user="Premise: {premise}\nHypothesis: {hypothesis}")
    p.check(("premise", "hypothesis"))
    msgs = p.render({"premise": "A", "hypothesis": "B"}, "premise: A\nhypothesis: B", ("yes", "no"))
    assert msgs[0]["content"] == "Return JSON like {\"label\": ...}. Use {input} literally."
    assert msgs[1]["content"] == "Premise: A\nHypothesis: B"


def test_unknown_placeholder_is_named_with_the_valid_ones():
    with pytest.raises(PromptError, match=r"\{inptu\}.*Available placeholders: \{input\}, \{labels\}, \{text\}"):
        PromptTemplate(user="{inptu}").check(("text",))


def test_prompt_file_json_form():
    p = PromptTemplate.from_file_text('{"system": "Be brief.", "user": "Q: {input}"}')
    assert (p.system, p.user) == ("Be brief.", "Q: {input}")
    assert PromptTemplate.from_text("x {input}").id == PromptTemplate(system="", user="x {input}").id


# --- parsing replies -------------------------------------------------------------------------------

LABELS = ("positive", "negative", "neutral")


@pytest.mark.parametrize("reply,expected,how", [
    ("positive", "positive", "exact"),
    ("Positive.", "positive", "normalized"),
    ("**NEGATIVE**", "negative", "normalized"),
    ("Answer: neutral", "neutral", "normalized"),
    ("Sentiment: Negative\nThe reviewer complains.", "negative", "normalized"),
    ("The sentiment of this review is positive.", "positive", "mention"),
    ("I think it's negative. Not positive at all.", "negative", "mention"),
    ("positive or negative", None, "ambiguous"),
    ("I cannot tell.", None, "none"),
    ("", None, "empty"),
    ("<think>maybe positive</think>negative", "negative", "normalized"),
])
def test_parse_label_table(reply, expected, how):
    assert parse_label(reply, LABELS) == (expected, how)


@pytest.mark.parametrize("reply,expected", [
    ("non-entailment", "non-entailment"),
    ("The answer is entailment.", "entailment"),
    ("This is a case of non-entailment.", "non-entailment"),
    ("Non entailment", "non-entailment"),
])
def test_a_label_inside_a_longer_label_does_not_count(reply, expected):
    assert parse_label(reply, ("entailment", "non-entailment"))[0] == expected


def test_underscored_labels_match_spaced_replies():
    assert parse_label("Feature request", ("bug", "feature_request"))[0] == "feature_request"


def test_cyrillic_labels():
    assert parse_label("Ответ: Негатив", ("позитив", "негатив")) == ("негатив", "normalized")


REPLIES = Path(__file__).parent / "data" / "zoo_replies.jsonl"


def _zoo_cases():
    if not REPLIES.exists():
        return []
    return [json.loads(line) for line in REPLIES.read_text(encoding="utf-8").splitlines() if line.strip()]


def _zoo_params():
    for c in _zoo_cases():
        marks = [pytest.mark.xfail(strict=True, reason=c["known_limitation"])] if c.get("known_limitation") else []
        yield pytest.param(c, marks=marks, id=f"{c['model']}:{c['reply'][:30]!r}")


@pytest.mark.parametrize("case", list(_zoo_params()))
def test_real_zoo_replies_map_as_a_careful_grader_reads_them(case):
    """Replies collected from the zoo models, each graded by hand (tests/data/zoo_replies.jsonl)."""
    got, how = parse_label(case["reply"], tuple(case["labels"]))
    expected = case["expected"]
    from promptlab.scoring.reading import normalize_label

    assert got == (normalize_label(expected) if expected is not None else None), (case["reply"], how, case.get("why"))


def test_zoo_reply_table_is_present_and_varied():
    cases = _zoo_cases()
    assert len(cases) >= 40
    assert {c["model"] for c in cases} == {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    assert any(c["expected"] is None for c in cases) and any(c["expected"] for c in cases)


# --- evaluation with a scripted target --------------------------------------------------------------

def keyword_model(messages, params):
    text = messages[-1]["content"]
    if "boom" in text:
        return RuntimeError("backend exploded")  # a failing example
    if "great" in text:
        return "Positive"
    if "awful" in text:
        return "negative."
    return "no idea"


@pytest.fixture
def tiny(store, tiny_csv):
    return import_dataset(store, tiny_csv)[0]


def test_evaluate_scores_and_second_run_makes_zero_calls(store, tiny):
    name = fakes.script("kw", keyword_model)
    spec = make_spec(name)
    metric = parse_metric("accuracy", tiny.labels)
    prompt = PromptTemplate.from_text("Label it: {labels}")
    first = evaluate(store, spec, prompt, tiny, tiny.frame, metric)
    assert first.n == tiny.n and first.calls == tiny.n and first.cached == 0
    assert first.score == pytest.approx(24 / 28)  # 4 neutral rows get "no idea" -> invalid -> wrong
    assert first.invalid_rate == pytest.approx(4 / 28)
    assert fakes.count("kw") == tiny.n
    second = evaluate(store, spec, prompt, tiny, tiny.frame, metric)
    assert second.calls == 0 and second.cached == tiny.n and fakes.count("kw") == tiny.n
    assert second.score == first.score
    assert store.call_stats()["calls"] == tiny.n
    stored = store.evaluations(prompt.id, model_key(spec, eval_params(spec, tiny.labels)), tiny.id)
    assert len(stored) == tiny.n and stored["correct"].sum() == 24


def test_progress_counts_the_new_calls_of_every_job_in_one_type(store, tiny):
    """One Progress for every job: evaluate expects the calls the cache cannot answer, then ticks each one; a
    second job on the same Progress adds its own; the front ends draw share and line()."""
    spec = make_spec(fakes.script("kw-progress", keyword_model))
    metric = parse_metric("accuracy", tiny.labels)
    seen = []
    progress = Progress(note="prompt 1 of 2", on_change=lambda p: seen.append((p.done, p.total)))
    evaluate(store, spec, PromptTemplate.from_text("Label it: {labels}"), tiny, tiny.frame, metric, progress=progress)
    assert progress.done == progress.total == tiny.n and progress.share == 1.0
    assert seen[0] == (0, tiny.n) and seen[-1] == (tiny.n, tiny.n)  # expected first, then one tick per call
    assert progress.line() == f"prompt 1 of 2: {tiny.n} of {tiny.n} new calls"
    evaluate(store, spec, PromptTemplate.from_text("Label it: {labels}"), tiny, tiny.frame, metric, progress=progress)
    assert progress.total == tiny.n  # all cached: nothing more to do
    evaluate(store, spec, PromptTemplate.from_text("Say one of {labels}"), tiny, tiny.frame, metric, progress=progress)
    assert progress.done == progress.total == 2 * tiny.n  # a second prompt on the same Progress adds its calls
    assert Progress().line() == "starting…" and Progress().share == 0.0


def test_a_failed_call_is_recorded_not_cached_and_not_fatal(store, tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("text,label\n" + "\n".join(
        [f"great {i},positive" for i in range(5)] + [f"awful {i},negative" for i in range(5)] + ["boom,negative", "boom 2,negative", "boom 3,positive"]))
    ds = import_dataset(store, path)[0]
    spec = make_spec(fakes.script("kw2", keyword_model))

    quick = RetryPolicy(max_attempts=2, base_delay_s=0.001)
    result = evaluate(store, spec, PromptTemplate.from_text("Label: {labels}"), ds, ds.frame, parse_metric("accuracy", ds.labels), retry=quick)
    failed = result.rows[result.rows["parse"] == "error"]
    assert len(failed) == 3 and failed["error"].str.contains("backend exploded").all()
    assert result.errors == 3 and result.score == pytest.approx(10 / 13)
    assert store.call_stats()["errors"] == 3
    # failures are not served from the cache: they are tried again next time
    again = evaluate(store, spec, PromptTemplate.from_text("Label: {labels}"), ds, ds.frame, parse_metric("accuracy", ds.labels), retry=quick)
    assert again.calls == 3 and again.cached == 10


def test_remote_models_run_with_bounded_concurrency(store, tiny):
    import threading
    import time

    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def slow(messages, params):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return "positive"

    spec = make_spec(fakes.script("slow", slow), concurrency=3)
    result = evaluate(store, spec, PromptTemplate.from_text("x"), tiny, tiny.frame, parse_metric("accuracy", tiny.labels))
    assert result.calls == tiny.n
    assert 1 < state["peak"] <= 3


def test_identical_inputs_are_called_once(store, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("text,label\n" + "\n".join(["great,positive"] * 4 + ["awful,negative"] * 4 + ["meh,neutral"] * 3))
    ds = import_dataset(store, path)[0]
    name = fakes.script("kw3", keyword_model)
    result = evaluate(store, make_spec(name), PromptTemplate.from_text("x"), ds, ds.frame, parse_metric("accuracy", ds.labels))
    assert result.calls == 3 and fakes.count("kw3") == 3 and result.n == 11


def test_a_job_of_parts_never_runs_its_progress_backwards():
    """Prompts side by side, matrix cells: each part learns its calls when it starts, and the bar only moves on."""
    p, shares = Progress(), []
    for part, calls in enumerate((85, 0, 85), 1):
        p.begin(part, 3, f"prompt {part} of 3")
        shares.append(p.share)
        p.expect(calls)
        for _ in range(calls):
            p.tick()
            shares.append(p.share)
        shares.append(p.share)
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] == 1.0
    assert p.line() == "prompt 3 of 3: 170 of 170 new calls"
