"""Few-shot, textual-gradient and chained strategies with scripted models: properties by construction."""
import hashlib

import pytest

import fakes
from conftest import sentiment_dataset
import promptlab.evaluate as E
from promptlab import planning, results, runs
from promptlab.data import import_dataset
from promptlab.errors import PromptlabError
from promptlab.models import make_spec
from promptlab.optimize import registry
from promptlab.optimize.auto import SHARES, STAGES
from promptlab.optimize.chain import Chain
from promptlab.optimize.confirmation import ConfirmationSettings
from promptlab.optimize.racing import Gate
from promptlab.optimize.strategy import Strategy


def target(messages, params):
    """Right when shown demos of all three labels (any format), or when told 'MAGIC'; else 'positive'."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    text = messages[-1]["content"]
    truth = "positive" if "great" in text else ("negative" if "awful" in text else "neutral")
    turns = {m["content"] for m in messages[1:-1] if m["role"] == "assistant"}
    inline = {lab for lab in ("positive", "negative", "neutral") if f"Answer: {lab}" in system}
    if "MAGIC" in system or len(turns | inline) >= 3:
        return truth
    return "positive"


def critic(messages, params):
    return "The instruction never says how to tell the labels apart; say MAGIC. " + "More words. " * 200


def editor(messages, params):
    ask = messages[-1]["content"]
    k = int(hashlib.sha256(ask.encode()).hexdigest(), 16) % 97
    return f"<prompt>Use MAGIC to label, version {k}. Answer with the label name only.</prompt><prompt>Label it, take {k}.</prompt>"


def arena_prop(messages, params):
    k = int(hashlib.sha256(messages[-1]["content"].encode()).hexdigest(), 16) % 97
    return f"<prompt>Label the sentiment carefully, try {k}.</prompt><prompt>Pick the label, attempt {k}.</prompt>"


@pytest.fixture
def dataset(store, tmp_path):
    return sentiment_dataset(store, tmp_path)


def specs():
    return (make_spec(fakes.script("s-target", target)), make_spec(fakes.script("s-critic", critic)),
            make_spec(fakes.script("s-editor", editor)), make_spec(fakes.script("s-arena", arena_prop)))


def run(store, ds, **kw):
    tgt, _, _, prop = specs()
    kw.setdefault("rounds", 3)
    kw.setdefault("minibatch_size", 8)
    cfg = planning.make_config(ds, tgt, kw.pop("proposers", [prop]), seed=5, **kw)
    run_id = runs.create_run(store, cfg)
    return run_id, runs.execute(store, run_id)


def test_fewshot_finds_demos_that_cover_the_labels(store, dataset):
    run_id, s = run(store, dataset, strategy="fewshot", proposers=[])
    cands = store.candidates(run_id)
    found = cands[~cands["proposer"].str.startswith(("baseline", "simplify/", "part/"))]  # the search's own
    assert len(found) >= 6 and set(found["proposer"]) <= {f"fewshot/{m}" for m in ("random", "stratified", "bootstrapped", "similar")}
    assert s["baseline_val"] < 0.5 and s["best_val"] == 1.0 and s["best_test"] == 1.0
    train = set(dataset.split("train")["idx"])
    assert all(d["idx"] in train for demos in cands["demos"] for d in demos)  # demos come from train only
    assert len({tuple(map(str, d)) for d in found["demos"]}) == len(found)  # no candidate scored twice
    by = {p["model"]: p for p in s["proposers"]}
    assert sum(p["asked"] for p in by.values()) == len(found)


def test_fewshot_similar_demos_differ_per_input(dataset):
    import numpy as np

    from promptlab.prompt import PromptTemplate
    from promptlab.optimize.demos import similar_pool

    pool = similar_pool(dataset.split("train"), dataset, 12, np.random.default_rng(0))
    t = PromptTemplate("Label it.").with_demos(pool, "chat", similar_k=2)
    a = t.render({}, "great thing indeed", dataset.labels)
    b = t.render({}, "awful thing indeed", dataset.labels)
    assert len(a) == len(b) == 1 + 2 * 2 + 1
    assert "great" in a[-3]["content"] and "awful" in b[-3]["content"]  # nearest demo sits next to the input


def test_gradient_edits_are_accepted_only_when_val_improves(store, dataset):
    tgt, crit, edit, _ = specs()
    run_id, s = run(store, dataset, strategy="gradient", proposers=[crit], critic=crit, editor=edit,
                    max_feedback_chars=300)
    steps = store.steps(run_id)
    critiques = [x for x in steps if x["kind"] == "critique"]
    assert critiques and all(len(c["feedback"]) <= 300 for c in critiques)  # bounded feedback
    assert s["best_val"] == 1.0 and "MAGIC" in s["best_prompt"] and s["best_proposer"] == edit.label
    cands = store.candidates(run_id)
    finished = [x for x in steps if x["kind"] == "round_finished"]
    best_vals = [f["best_val"] for f in finished]
    assert best_vals == sorted(best_vals)  # the current prompt never gets worse
    before = cands[cands["proposer"] == "baseline"]["val_score"].max()
    for f in finished:  # an edit is accepted exactly when it beats the current prompt's val score
        assert f["improved"] == (f["best_val"] > before)
        before = f["best_val"]
    edits = cands[cands["proposer"] == edit.label]
    assert all(p for p in edits["parents"])  # each edit names the prompt it came from
    # each call read back as it ran: the critic's meta-prompt and its feedback, then the editor's meta-prompt and reply
    calls = results.proposals(store, run_id)
    assert [c["call"] for c in calls if c["call"] == "critique"] and {c["stage"] for c in calls} == {"gradient"}
    for c, x in zip([c for c in calls if c["call"] == "critique"], critiques):
        assert (c["proposer"], c["meta_prompt"], c["reply"], c["criticized"]) == \
            (crit.label, x["meta_prompt"], x["feedback"], x["prompt_id"]) and c["asked"] is None
    made = [x for x in steps if x["kind"] == "proposal_made"]
    assert [(c["meta_prompt"], c["reply"]) for c in calls if c["call"] == "proposal"] == \
        [(x["meta_prompt"], x["raw_reply"]) for x in made]


def test_chain_runs_the_arena_then_fewshot_on_its_winner_within_one_budget(store, dataset):
    run_id, s = run(store, dataset, strategy="arena,fewshot", budget=700)
    steps = store.steps(run_id)
    stages = [x for x in steps if x["kind"] == "stage_started"]
    assert [x["strategy"] for x in stages] == ["arena", "fewshot"]
    assert stages[1]["target_cap"] <= 700
    cands = store.candidates(run_id)
    first_fewshot = cands[cands["proposer"].str.startswith("fewshot/")]["round"].min()
    last_arena = cands[cands["proposer"] == specs()[3].label]["round"].max()
    assert first_fewshot > last_arena  # rounds continue across stages
    assert s["best_val"] == 1.0 and s["best_proposer"].startswith("fewshot/")
    assert store.run_row(run_id)["config"]["strategy"] == "arena,fewshot"
    assert {c["stage"] for c in results.proposals(store, run_id)} == {"arena"}  # few-shot chooses: no proposer call
    search_requests = max(x.get("target_requests", 0) for x in steps if x["kind"] == "candidate_scored")
    assert search_requests <= 700


@pytest.mark.parametrize("strategy,crash_at", [("arena,fewshot", 250), ("fewshot", 70), ("gradient", 60)])
def test_resumes_after_a_crash_to_the_same_state(store, dataset, tmp_path, monkeypatch, strategy, crash_at):
    from promptlab.store import Store

    ref_store = Store(tmp_path / "ref.duckdb")
    ref_ds = import_dataset(ref_store, tmp_path / "sent.csv")[0]
    ref_id, ref = run(ref_store, ref_ds, strategy=strategy, budget=600)
    real = E.complete
    state = {"n": 0}

    def crashing(spec, messages, params=None, **kw):
        state["n"] += 1
        if state["n"] == crash_at:
            raise RuntimeError("power cut")
        return real(spec, messages, params, **kw)

    monkeypatch.setattr(E, "complete", crashing)
    tgt, _, _, prop = specs()
    cfg = planning.make_config(dataset, tgt, [prop], seed=5, rounds=3, minibatch_size=8, strategy=strategy, budget=600)
    run_id = runs.create_run(store, cfg)
    with pytest.raises(RuntimeError):
        runs.execute(store, run_id)
    assert "run_finished" not in store.step_kinds(run_id)
    monkeypatch.setattr(E, "complete", real)
    s = runs.execute(store, run_id)
    cols = ["id", "round", "proposer", "status", "val_score", "test_score", "text"]
    assert store.candidates(run_id)[cols].fillna(-1).to_dict("records") == ref_store.candidates(ref_id)[cols].fillna(-1).to_dict("records")
    assert store.call_stats()["calls"] == ref_store.call_stats()["calls"]
    assert s["best_val"] == ref["best_val"]
    ref_store.close()


def test_strategy_choices_are_checked(store, dataset):
    tgt = specs()[0]
    with pytest.raises(PromptlabError, match="use one of arena, fewshot, gradient"):
        planning.make_config(dataset, tgt, [tgt], strategy="arena,magic")
    with pytest.raises(PromptlabError, match="needs proposer models"):
        planning.make_config(dataset, tgt, [], strategy="gradient")
    with pytest.raises(PromptlabError, match="demo selection"):
        planning.make_config(dataset, tgt, [], strategy="fewshot", methods=["telepathy"])
    with pytest.raises(PromptlabError, match="setting"):
        planning.make_config(dataset, tgt, [tgt], strategy="arena", max_demos=3)
    planning.make_config(dataset, tgt, [], strategy="fewshot", max_demos=3, demo_format="search")


def test_a_candidate_the_budget_cannot_finish_is_marked_over_budget_not_left_half_done(store, dataset):
    """A tight budget: no candidate is left half done (each is scored, stopped by the race, or marked over budget),
    none is made that the budget could not score at all (a round or trial starts only when its first rung fits), and
    the budget holds."""
    run_id, s = run(store, dataset, strategy="arena,fewshot", budget=120, rounds=2)
    cands = store.candidates(run_id)
    assert s["status"] == "finished"
    searched = cands[(cands["round"] > 0) & ~cands["family"].isin(results.AFTER_DECISION)]
    assert set(searched["status"]) <= {"evaluated", "gated", "over budget"}
    assert searched["n_scored"].fillna(0).gt(0).all()  # every one was scored on at least its first rung
    assert all(st["never_scored"] == 0 for st in s["stages"])
    over = cands[cands["status"] == "over budget"]
    assert over["val_score"].isna().all()
    steps = store.steps(run_id)
    assert max(x.get("target_requests", 0) for x in steps if x["kind"] == "candidate_scored") <= 120


def test_live_progress_of_a_finished_run_reports_its_exact_cache_hits(store, dataset):
    """A repeated run is served from the cache: the Runs page's 'cached' figure is the run's own count
    (it used to subtract the test scoring from the search requests and show 0)."""
    first, s1 = run(store, dataset, strategy="fewshot", proposers=[])
    again, s2 = run(store, dataset, strategy="fewshot", proposers=[])
    assert results.live_progress(store, first)["cached"] == s1["cached_calls"]
    p2 = results.live_progress(store, again)
    assert p2["cached"] == s2["cached_calls"] > 0 and s2["target_calls"] == 0


def test_demos_are_searched_for_the_analysts_own_prompt_even_when_proposals_lead():
    from promptlab.prompt import PromptTemplate
    from promptlab.optimize.fewshot import _distinct_instructions
    from promptlab.optimize.pool import Pool

    pool = Pool()
    own, _ = pool.add(0, PromptTemplate.from_text("My own prompt: {labels}"), "baseline", "baseline")
    own.val = 0.5
    for i, v in enumerate((0.9, 0.8, 0.7)):
        c, _ = pool.add(1, PromptTemplate.from_text(f"Proposal {i}: {{labels}}"), "arena/x", "x")
        c.val = v
    texts = [t.system or t.user for t in _distinct_instructions(pool, 2, keep_start=True)]
    assert len(texts) == 2 and texts[0].startswith("Proposal 0") and texts[1].startswith("My own prompt")
    assert all("My own" not in (t.system or t.user) for t in _distinct_instructions(pool, 2))  # runs before v3


@pytest.mark.parametrize("strategy", registry.STRATEGY_MENU)
def test_every_strategy_keeps_the_contract_run_strategy_relies_on(store, dataset, strategy):
    """optimize.strategy.Strategy states what run_strategy reads; every strategy the registry builds, chains and auto's
    stages included, has it, and its projection gives the figures the frame and the pages read."""
    tgt, _, _, prop = specs()
    cfg = planning.make_config(dataset, tgt, [prop], seed=5, strategy=strategy, budget=300)
    built, ctx = planning.build(store, cfg, "contract")
    parts = [built, *getattr(built, "stages", ()), *getattr(built, "chain", Chain(())).stages]
    for s in parts:
        assert isinstance(s, Strategy), f"{s.name} does not keep the Strategy contract"
        assert isinstance(s.gate_config, Gate) and isinstance(s.decision, ConfirmationSettings)
        assert s.starts(ctx), f"{s.name} starts from nothing"
        proj = s.projection(len(ctx.trainset), len(ctx.valset), len(ctx.testset), 2)
        assert {"baseline_calls", "target_search", "target_test", "proposer_calls"} <= set(proj)
        assert set(proj["target_search"]) == {"min", "expected", "max"}
        assert s.decision.confirm_reserve(10, "simple") >= 0 and s.decision.test_top >= 0


def test_auto_is_a_chain_with_its_shares_declared_once(store, dataset):
    tgt, _, _, prop = specs()
    cfg = planning.make_config(dataset, tgt, [prop], seed=5, strategy="auto", budget=300, edits_share=0.0)
    auto, _ = planning.build(store, cfg, "auto")
    chain = auto.chain
    assert chain.roles == ("instructions", "demos", "instructions for the demos")
    assert chain.shares == tuple(getattr(auto, st.share) for st in STAGES if st.role in chain.roles)
    assert set(SHARES) == {st.share for st in STAGES} and auto.edits is None
