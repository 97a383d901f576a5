"""Semi-automatic rounds and tasks beyond labels, with scripted models (logic only; real models elsewhere)."""
import json
import re

import pytest

import fakes
from conftest import sentiment_dataset
from test_arena import config_for
from promptlab import planning, report, results, review, runs
from promptlab.data import import_dataset
from promptlab.errors import DataError, PromptlabError
from promptlab.models import make_spec


@pytest.fixture
def dataset(store, tmp_path):
    return sentiment_dataset(store, tmp_path, neutral=15)


def test_a_review_run_pauses_after_each_round_and_applies_every_decision(store, dataset):
    cfg = config_for(dataset, rounds=2, review="rounds")
    run_id = runs.create_run(store, cfg)
    s = runs.execute(store, run_id)
    assert s["status"] == "paused"
    pause = review.paused_at(store, run_id)
    assert pause.round == 1 and pause.candidate_ids
    view = review.round_view(store, run_id)
    assert [c["id"] for c in view["candidates"]] == list(pause.candidate_ids)
    assert view["best"]["id"] == pause.best_id
    first, *rest = pause.candidate_ids
    # Resuming while undecided stays paused and adds nothing.
    n_steps = store.step_count(run_id)
    assert runs.execute(store, run_id)["status"] == "paused"
    assert store.step_count(run_id) == n_steps

    with pytest.raises(PromptlabError, match="not one of round 1"):
        review.decide(store, run_id, "keep", 1)  # the baseline is not this round's
    with pytest.raises(PromptlabError, match="cannot be used"):
        review.decide(store, run_id, "add", text="Use {nonsense} here.")
    review.decide(store, run_id, "discard", first, note="too long")
    review.decide(store, run_id, "edit", pause.best_id, text="Use MAGIC, and answer with the label only.")
    review.decide(store, run_id, "add", text="My own prompt. Answer with one of: {labels}.")
    detail = review.rescore(store, run_id, pause.best_id)
    assert detail["n"] > 0 and detail["on"] == "train+val"
    review.decide(store, run_id, "continue")
    with pytest.raises(PromptlabError, match="already closed"):
        review.decide(store, run_id, "discard", first)  # after continue: refused, never silently dropped
    s = runs.execute(store, run_id)
    assert s["status"] == "paused" and review.paused_at(store, run_id).round == 2
    review.decide(store, run_id, "stop")
    s = runs.execute(store, run_id)
    assert s["status"] == "finished"

    steps = store.steps(run_id)
    decided = [st for st in steps if st["kind"] == "decided"]
    analyst = [(d["action"], d["who"]) for d in decided if d["who"] == "analyst"]
    assert ("discard", "analyst") in analyst and ("edit", "analyst") in analyst and ("add", "analyst") in analyst
    assert ("rescore", "analyst") in analyst and ("continue", "analyst") in analyst and ("stop", "analyst") in analyst
    assert {d["who"] for d in decided} == {"analyst", "rule"}  # undecided candidates: the rule
    cands = store.candidates(run_id)
    human = cands[cands["proposer"] == "human"]
    assert len(human) == 2
    edited = human[human["parents"].apply(lambda p: json.loads(p) == [pause.best_id])]
    assert len(edited) == 1 and edited.iloc[0]["val_score"] == 1.0  # MAGIC is perfect on this target
    assert cands.set_index("id").loc[first, "status"] in ("evaluated", "gated")
    discard = [d for d in store.decisions(run_id) if d["action"] == "discard"]
    assert [(d["candidate_id"], d["note"], d["who"]) for d in discard] == [(first, "too long", "analyst")]
    assert s["best_id"] != first  # a discarded prompt never becomes the best
    # Replaying from scratch takes the same path.
    kinds = store.step_kinds(run_id)
    store2 = store
    assert runs.execute(store2, run_id)["status"] == "finished"
    assert store.step_kinds(run_id) == kinds
    # The calls made are counted over every execution (pauses included), not just the last one, which
    # here is the replay: it made nothing new and read everything back from the cache.
    stored = store.run_call_counts(run_id)
    line = report.calls_line(results.summarize(store, run_id))
    assert stored["eval"]["calls"] > 0 and stored["propose"]["calls"] > 0
    assert f"made for this run: {stored['eval']['calls']} target + {stored['propose']['calls']} proposer" in line
    assert "its last execution (after a pause or a resume) made 0 and read" in line


def test_decisions_are_refused_when_the_run_is_not_paused(store, dataset):
    run_id = runs.create_run(store, config_for(dataset, rounds=1))
    runs.execute(store, run_id)
    with pytest.raises(PromptlabError, match="not waiting for a review"):
        review.decide(store, run_id, "continue")


def test_an_automatic_run_records_the_rules_decisions(store, dataset):
    run_id = runs.create_run(store, config_for(dataset, rounds=2))
    runs.execute(store, run_id)
    decided = [s for s in store.steps(run_id) if s["kind"] == "decided"]
    assert decided and {d["who"] for d in decided} == {"rule"}
    cands = store.candidates(run_id)
    proposed = cands[cands["round"] > 0]
    assert len(decided) == len(proposed)


def test_a_stored_run_without_review_replays_unchanged(store, dataset):
    """Runs stored before decisions existed read review='unrecorded' (they stored none, or "none") and yield no
    decision steps."""
    cfg = config_for(dataset, rounds=1).to_record()
    cfg.pop("review")
    rec = planning.RunConfig.from_record(cfg)
    assert rec.review == "unrecorded"
    assert planning.RunConfig.from_record(cfg | {"review": "none"}).review == "unrecorded"
    run_id = runs.create_run(store, rec)
    runs.execute(store, run_id)
    assert not [s for s in store.steps(run_id) if s["kind"] == "decided"]


# --- tasks beyond labels ---------------------------------------------------------------------------

REF_ROWS = [("What is 2 + 2?", "4"), ("What is 3 + 5?", "8"), ("Capital of France?", "Paris"),
            ("What is 10 - 3?", "7"), ("Capital of Italy?", "Rome"), ("What is 6 * 7?", "42"),
            ("Столица России?", "Москва"), ("Сколько будет 9 умножить на 7?", "63"), ("Capital of Spain?", "Madrid"),
            ("What is 12 / 4?", "3"), ("Capital of Japan?", "Tokyo"), ("What is 5 + 9?", "14")]
ANSWERS = dict(REF_ROWS)


def ref_target(messages, params):
    """Right only when told to be brief (else it pads the answer, which exact match fails)."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    q = messages[-1]["content"]
    answer = ANSWERS.get(q, "?")
    return answer if "BRIEF" in system else f"The answer is {answer}."


def ref_proposer(messages, params):
    return "<prompt>Answer BRIEF: the answer only.</prompt><prompt>Think, then answer.</prompt>"


def recording_proposer(name: str):
    """A scripted proposer (ref_proposer's replies) and the list of meta-prompts it was shown."""
    seen = []

    def prop(messages, params):
        seen.append(messages[-1]["content"])
        return ref_proposer(messages, params)

    return make_spec(fakes.script(name, prop)), seen


@pytest.fixture
def ref_dataset(store, tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\n" + "\n".join(f'"{q}","{a}"' for q, a in REF_ROWS * 2) + "\n", encoding="utf-8")
    return import_dataset(store, path, kind="reference", scoring={"metric": "exact"})[0]


def test_reference_dataset_imports_with_its_scoring_and_a_plain_split(store, ref_dataset, tmp_path):
    assert ref_dataset.kind == "reference" and ref_dataset.labels == () and ref_dataset.label_col == "answer"
    assert ref_dataset.scoring == {"metric": "exact"}
    sizes = [len(ref_dataset.split(s)) for s in ("train", "val", "test")]
    assert sum(sizes) == ref_dataset.n and min(sizes) > 0
    with pytest.raises(DataError, match="no reference answer"):
        bad = tmp_path / "bad.csv"
        bad.write_text("question,answer\nq1,a\nq2,\nq3,c\n", encoding="utf-8")
        import_dataset(store, bad, kind="reference")


def test_an_arena_on_reference_answers_learns_from_low_scores(store, ref_dataset):
    target = make_spec(fakes.script("ref-target", ref_target))
    proposer, seen = recording_proposer("ref-prop")
    cfg = planning.make_config(ref_dataset, target, [proposer], rounds=1, minibatch_size=4, metric="exact", seed=1,
                           strategy="arena", confirm=0.0)  # 16 rows: too few to hold val back
    assert cfg.metric == "exact" and "Reply with the answer only" not in cfg.meta_prompt
    run_id = runs.create_run(store, cfg)
    s = runs.execute(store, run_id)
    assert s["best_val"] == 1.0
    meta = seen[0]
    assert "Reference answer:" in meta and "Low-scoring answers" in meta and "Label:" not in meta
    assert "the reply must equal the reference answer exactly" in meta


def judge_reply(messages, params):
    prompt = messages[-1]["content"]
    answer = re.search(r"<answer>\n(.*?)\n</answer>", prompt, re.S).group(1)
    if len(answer) <= 8:
        return "Short and to the point.\nScore: 5"
    return "Padded with filler words around the answer.\nScore: 2"


def test_an_unlabeled_dataset_is_scored_by_the_judge_and_proposers_see_its_reasons(store, tmp_path):
    path = tmp_path / "open.csv"
    path.write_text("input\n" + "\n".join(q for q, _ in REF_ROWS * 2) + "\n", encoding="utf-8")
    ds = import_dataset(store, path, kind="unlabeled")[0]
    assert ds.kind == "unlabeled" and ds.label_col == ""
    target = make_spec(fakes.script("open-target", ref_target))
    judge = make_spec(fakes.script("open-judge", judge_reply))
    proposer, seen = recording_proposer("open-prop")
    with pytest.raises(PromptlabError, match="judge"):
        planning.make_config(ds, target, [proposer], metric="exact")
    cfg = planning.make_config(ds, target, [proposer], rounds=1, minibatch_size=4, metric="judge", seed=1,
                           strategy="arena", confirm=0.0,
                           judge={"model": judge.to_record(), "rubric": "Short answers are best.", "lo": 1, "hi": 5})
    run_id = runs.create_run(store, cfg)
    s = runs.execute(store, run_id)
    assert s["best_val"] == 1.0
    assert "Short answers are best." in seen[0] and "Why (the judge): 2/5: Padded with filler" in seen[0]
    calls = store.run_call_counts(run_id)
    assert calls["judge"]["calls"] > 0


@pytest.mark.parametrize("strategy", ["fewshot", "gradient"])
def test_fewshot_and_gradient_run_on_a_scorer(store, ref_dataset, strategy):
    target = make_spec(fakes.script("ref-target2", ref_target))
    proposer = make_spec(fakes.script("ref-prop2", ref_proposer))
    cfg = planning.make_config(ref_dataset, target, [proposer], rounds=1, minibatch_size=4, metric="token_f1",
                           strategy=strategy, seed=2)
    run_id = runs.create_run(store, cfg)
    s = runs.execute(store, run_id)
    assert s["status"] == "finished" and 0 <= s["best_val"] <= 1


# --- the CLI: a decisions file, the interactive loop, grading and the judge check -------------------

def _cli_run(tmp_path, dataset_path, *extra):
    from promptlab.cli import main

    db = tmp_path / "cli.duckdb"
    fakes.script("cli-target", ref_target)
    fakes.script("cli-prop", ref_proposer)
    code = main(["optimize", "--db", str(db), "--dataset", str(dataset_path), "--target", "fake/cli-target",
                 "--proposers", "fake/cli-prop", "--rounds", "2", "--minibatch", "4", "--metric", "exact", "--review",
                 *extra])
    return db, code


def _qa_file(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\n" + "\n".join(f'"{q}","{a}"' for q, a in REF_ROWS * 2) + "\n", encoding="utf-8")
    return path


def test_cli_review_from_a_decisions_file(tmp_path, capsys):
    from promptlab.cli import main
    from promptlab.store import Store

    qa = _qa_file(tmp_path)
    db = tmp_path / "cli.duckdb"
    assert main(["datasets", "import", str(qa), "--db", str(db), "--kind", "reference", "--scorer", "exact"]) == 0
    db, code = _cli_run(tmp_path, "qa")
    assert code == 0
    assert "paused after round 1 for your review" in capsys.readouterr().out
    store = Store(db)
    run_id = store.list_runs()["id"].iloc[-1]
    pause = review.paused_at(store, run_id)
    decisions = tmp_path / "d.jsonl"
    decisions.write_text("\n".join(json.dumps(d) for d in [
        {"action": "discard", "candidate": pause.candidate_ids[-1], "note": "rambles"},
        {"action": "add", "text": "Answer BRIEF. Only the answer."},
        {"action": "continue"},
        {"round": 2, "action": "stop"},
    ]), encoding="utf-8")
    assert main(["review", run_id, "--db", str(db), "--decisions", str(decisions)]) == 0
    out = capsys.readouterr().out
    assert "round 1" in out and "decided: discard" in out and "finished" in out
    assert store.run_row(run_id)["status"] == "finished"
    who = {(s["action"], s["who"]) for s in store.steps(run_id) if s["kind"] == "decided"}
    assert ("add", "analyst") in who and ("stop", "analyst") in who
    assert main(["runs", "show", run_id, "--db", str(db)]) == 0
    stored = store.run_call_counts(run_id)
    assert f"calls made for this run: {stored['eval']['calls']} target + {stored['propose']['calls']} proposer" \
        in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"action\": \"launch\"}]", encoding="utf-8")
    assert main(["review", run_id, "--db", str(db), "--decisions", str(bad)]) == 1
    assert "needs an action" in capsys.readouterr().err


def test_cli_review_interactively(tmp_path, capsys, monkeypatch):
    from promptlab.cli import main
    from promptlab.store import Store

    qa = _qa_file(tmp_path)
    db = tmp_path / "cli.duckdb"
    main(["datasets", "import", str(qa), "--db", str(db), "--kind", "reference", "--scorer", "exact"])
    _cli_run(tmp_path, "qa")
    store = Store(db)
    run_id = store.list_runs()["id"].iloc[-1]
    pause = review.paused_at(store, run_id)
    lines = iter([f"k {pause.candidate_ids[0]}", "k 999", f"e {pause.best_id}", "Answer BRIEF please.", ".",
                  f"r {pause.best_id}", "c", "q"])
    monkeypatch.setattr("builtins.input", lambda *a: next(lines))
    assert main(["review", run_id, "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "not 999" in out and "on train+val" in out and "the run stays paused" in out
    assert review.paused_at(store, run_id).round == 2
    human = store.candidates(run_id).query("proposer == 'human'")
    assert len(human) == 1 and json.loads(human.iloc[0]["parents"]) == [pause.best_id]


def test_cli_grade_from_a_file_and_judge_check(tmp_path, capsys):
    from promptlab.cli import main

    qa = _qa_file(tmp_path)
    db = tmp_path / "g.duckdb"
    main(["datasets", "import", str(qa), "--db", str(db), "--kind", "unlabeled", "--input-col", "question"])
    fakes.script("g-target", ref_target)
    fakes.script("g-judge", judge_reply)
    common = ["--db", str(db), "--dataset", "qa", "--model", "fake/g-target", "--prompt", "Answer BRIEF.",
              "--split", "all", "--limit", "6", "--json"]
    assert main(["grade", *common, "--summary"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 0
    from promptlab.store import Store
    from promptlab import grading as G
    from promptlab.data import stored_dataset
    from promptlab.prompt import PromptTemplate
    from promptlab.models import resolve_model

    store = Store(db)
    batch = G.outputs(store, stored_dataset(store, "qa"), resolve_model("fake/g-target"),
                      PromptTemplate.from_text("Answer BRIEF."), split="all", limit=6)
    grades = tmp_path / "grades.csv"
    grades.write_text("example,grade,note\n" + "\n".join(f"{it.example_idx},{5 if len(it.output) <= 8 else 2},ok"
                                                         for it in batch.items), encoding="utf-8")
    assert main(["grade", *common, "--grades", str(grades)]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["n"] == 6 and s["scale"] == "1-5" and s["ci"][0] <= s["score"] <= s["ci"][1]
    assert main(["judge-check", *common, "--judge", "fake/g-judge", "--rubric", "Short is best."]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["n"] == 6 and stats["exact"] == 1.0 and stats["kappa"] == 1.0
    bad = tmp_path / "bad.csv"
    first = batch.items[0].example_idx
    bad.write_text(f"example,grade\n{first},1\n{first},9\n", encoding="utf-8")
    assert main(["grade", *common, "--grades", str(bad)]) == 1
    assert "line 3: '9' is off the scale" in capsys.readouterr().err
    assert G.summary(store, batch.dataset.id, batch.prompt_id, batch.model_key)["mean_grade"] == s["mean_grade"]


def test_grades_become_a_score_with_n_and_ci(store, tmp_path):
    from promptlab import grading as G
    from promptlab.prompt import PromptTemplate

    path = tmp_path / "open.csv"
    path.write_text("input\n" + "\n".join(q for q, _ in REF_ROWS) + "\n", encoding="utf-8")
    ds = import_dataset(store, path, kind="unlabeled")[0]
    target = make_spec(fakes.script("gr-target", ref_target))
    batch = G.outputs(store, ds, target, PromptTemplate.from_text("Be BRIEF."), split="all", limit=None,
                      scale="pass/fail")
    assert len(batch.items) == len(REF_ROWS) and all(it.grade is None for it in batch.items)
    for it in batch.items[:8]:
        G.record(store, batch, it, 1.0 if it.output != "?" else 0.0, "pass/fail", note="n", grader="ann", blind=True)
    s = G.summary(store, ds.id, batch.prompt_id, batch.model_key, "pass/fail", batch.pairs)
    assert s["n"] == 8 and s["scale"] == "pass/fail" and 0 <= s["ci"][0] <= s["score"] <= s["ci"][1] <= 1
    again = G.outputs(store, ds, target, PromptTemplate.from_text("Be BRIEF."), split="all", limit=None,
                      scale="pass/fail")
    assert sum(it.grade is not None for it in again.items) == 8  # grades stay with their outputs
    # another scale is another set of grades: nothing is mixed or overwritten
    other = G.outputs(store, ds, target, PromptTemplate.from_text("Be BRIEF."), split="all", limit=None)
    assert all(it.grade is None for it in other.items)
    G.record(store, other, other.items[0], 3.0, "1-5", grader="ann")
    assert G.summary(store, ds.id, batch.prompt_id, batch.model_key, "pass/fail", batch.pairs)["n"] == 8
    assert G.summary(store, ds.id, batch.prompt_id, batch.model_key, "1-5", other.pairs)["n"] == 1
    judge = make_spec(fakes.script("gr-judge", judge_reply))
    with pytest.raises(PromptlabError, match="graded on pass/fail"):
        G.calibrate(store, batch, judge, "Short is best.", "1-5")
    # fetching outputs to grade never overwrites the scores stored by an evaluation
    assert store._one("SELECT count(*) FROM evaluations WHERE parse = 'output'")[0] == 0
    with pytest.raises(PromptlabError, match="not a pass/fail grade"):
        G.parse_grade("7", "pass/fail")
    with pytest.raises(PromptlabError, match="off the scale"):
        G.parse_grade("6", "1-5")


def test_an_edit_that_repeats_a_gated_candidate_keeps_and_scores_it(store, dataset):
    cfg = config_for(dataset, rounds=1, review="rounds", gate="mean", top_k=1)
    run_id = runs.create_run(store, cfg)
    runs.execute(store, run_id)
    cands = store.candidates(run_id)
    gated = cands[(cands["status"] == "gated")]
    if gated.empty:
        pytest.skip("no gated candidate with this seed")
    g = gated.iloc[0]
    other = int(cands[cands["id"] != g["id"]]["id"].iloc[0])
    review.decide(store, run_id, "edit", other, text=g["text"])
    review.decide(store, run_id, "continue")
    runs.execute(store, run_id)
    decided = [(s["action"], s["candidate_id"], s["who"]) for s in store.steps(run_id) if s["kind"] == "decided"]
    assert ("edit", int(g["id"]), "analyst") in decided
    assert ("discard", int(g["id"]), "rule") not in decided
    assert store.candidates(run_id).set_index("id").loc[int(g["id"]), "val_score"] >= 0  # scored in full now
