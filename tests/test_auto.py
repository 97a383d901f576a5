"""auto, racing and the honest winner, with scripted models: properties by construction."""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

import fakes
from conftest import sentiment_dataset
from promptlab import planning, report, results, runs
from promptlab.optimize import registry
from promptlab.scoring import stats
from promptlab.data import import_dataset
from promptlab.split import holdout_split, stratified_order
from promptlab.errors import PromptlabError
from promptlab.scoring.labels import parse_metric
from promptlab.models import make_spec
from promptlab.optimize.racing import race_rungs
from promptlab.optimize.strategy import PoolStrategy


def target(messages, params):
    """Right when shown demos of all three labels, or told 'MAGIC'; else 'positive'."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    text = messages[-1]["content"]
    truth = "positive" if "great" in text else ("negative" if "awful" in text else "neutral")
    turns = {m["content"] for m in messages[1:-1] if m["role"] == "assistant"}
    if "MAGIC" in system or len(turns) >= 3:
        return truth
    return "positive"


def arena_prop(messages, params):
    k = int(hashlib.sha256(messages[-1]["content"].encode()).hexdigest(), 16) % 997
    return f"<prompt>Label the sentiment carefully, try {k}.</prompt><prompt>Pick the label, attempt {k}.</prompt>"


def critic(messages, params):
    return "Say how to tell the labels apart."


def editor(messages, params):
    k = int(hashlib.sha256(messages[-1]["content"].encode()).hexdigest(), 16) % 997
    return f"<prompt>Label it well, edit {k}.</prompt><prompt>Label it better, edit {k}.</prompt>"


@pytest.fixture
def dataset(store, tmp_path):
    return sentiment_dataset(store, tmp_path, neutral=40)  # 100 rows: val 35 -> 17 search + 18 held back


def specs():
    return (make_spec(fakes.script("a-target", target)), make_spec(fakes.script("a-prop", arena_prop)),
            make_spec(fakes.script("a-critic", critic)), make_spec(fakes.script("a-editor", editor)))


def run(store, ds, **kw):
    tgt, prop, crit, edit = specs()
    kw.setdefault("rounds", 2)
    kw.setdefault("minibatch_size", 6)
    proposers = kw.pop("proposers", [prop])
    if proposers and kw.get("strategy", "auto") in ("auto", "gradient"):
        kw.setdefault("critic", crit)
        kw.setdefault("editor", edit)
    cfg = planning.make_config(ds, tgt, proposers, seed=3, **kw)
    run_id = runs.create_run(store, cfg)
    return run_id, runs.execute(store, run_id)


# --- racing and splits ---------------------------------------------------------------------------

def test_race_rungs_double_and_end_at_all_of_val():
    assert race_rungs(20, 70) == [20, 40, 70]
    assert race_rungs(20, 84) == [20, 40, 84]  # 80 -> 84 is too short a step: merged
    assert race_rungs(20, 15) == [15]
    assert race_rungs(4, 17) == [4, 8, 17]


def test_every_prefix_of_the_race_order_keeps_the_label_mix():
    frame = pd.DataFrame({"idx": range(100), "label_norm": ["a"] * 70 + ["b"] * 20 + ["c"] * 10})
    order = stratified_order(frame, seed=1)
    assert sorted(order["idx"]) == list(range(100))
    for n in (10, 20, 40):
        counts = order.head(n)["label_norm"].value_counts()
        assert abs(counts.get("a", 0) - 0.7 * n) <= 1.5 and abs(counts.get("c", 0) - 0.1 * n) <= 1.5
    assert list(stratified_order(frame, seed=1)["idx"]) == list(order["idx"])  # seeded


def test_holdout_split_is_disjoint_stratified_and_seeded():
    frame = pd.DataFrame({"idx": range(40), "label_norm": ["a"] * 30 + ["b"] * 10})
    kept, held = holdout_split(frame, 0.5, seed=2)
    assert len(held) == 20 and not set(kept["idx"]) & set(held["idx"])
    assert held["label_norm"].value_counts().to_dict() == {"a": 15, "b": 5}
    assert list(holdout_split(frame, 0.5, seed=2)[1]["idx"]) == list(held["idx"])
    rare = pd.DataFrame({"idx": range(21), "label_norm": ["a"] * 20 + ["b"]})  # one 'b' row: it stays for the search
    for seed in range(5):
        kept, held = holdout_split(rare, 0.5, seed=seed)
        assert "b" in set(kept["label_norm"]) and "b" not in set(held["label_norm"])


def _rows(correct, gold="x"):
    return pd.DataFrame({"example_idx": range(len(correct)), "gold_norm": [gold] * len(correct),
                         "pred": [gold if c else "y" for c in correct], "score": [float(c) for c in correct]})


def test_race_bound_drops_a_clone_and_keeps_a_promising_candidate():
    m = parse_metric("accuracy", ("x", "y"))
    leader = _rows([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    assert stats.race_bound(m, leader, leader, 0.9)[1] == 0  # identical answers cannot beat the leader
    better = _rows([1, 1, 1, 0, 1, 0, 1, 1, 1, 0])
    mean, upper = stats.race_bound(m, better, leader, 0.9)
    assert mean == pytest.approx(0.2) and upper > 0
    worse = _rows([0, 0, 0, 0, 1, 0, 0, 0, 1, 0])
    assert stats.race_bound(m, worse, leader, 0.9)[1] < 0
    # a metric that is not a mean over examples takes the paired bootstrap
    f1 = parse_metric("macro_f1", ("x", "y"))
    assert stats.race_bound(f1, leader, leader, 0.9)[1] == pytest.approx(0)


def test_compare_is_paired_and_significant_only_beyond_noise():
    m = parse_metric("accuracy", ("x", "y"))
    base = _rows([0] * 30 + [1] * 30)
    strong = _rows([1] * 30 + [1] * 30)
    c = stats.compare(m, base, strong, 0.95)
    assert c.diff == pytest.approx(0.5) and c.significant and c.p_value < 1e-6 and c.ci_low > 0
    noisy = _rows([1, 1, 0] + [0] * 27 + [1] * 30)
    assert not stats.compare(m, base, noisy, 0.95).significant


# --- auto --------------------------------------------------------------------------------------

def _held_back(store, run_id) -> int:
    """How many val examples the run held back to confirm its result (the baseline and one finalist read them)."""
    return next(x["n_confirm"] - x.get("n_from_train", 0) for x in store.steps(run_id) if x["kind"] == "winner_chosen")


def test_auto_runs_instructions_demos_instructions_for_them_and_edits_on_one_budget_and_confirms_the_winner(store, dataset):
    run_id, s = run(store, dataset, budget=900)
    steps = store.steps(run_id)
    stages = [x for x in steps if x["kind"] == "stage_started"]
    assert [(x["strategy"], x["role"]) for x in stages] == [
        ("arena", "instructions"), ("fewshot", "demos"), ("arena", "instructions for the demos"), ("gradient", "edits")]
    caps = [x["target_cap"] for x in stages]
    assert caps[-1] <= 900
    held = _held_back(store, run_id)
    confirm_reserve = 4 * held  # the baseline, the one finalist and two variants of the result (the simplification)
    assert caps[-1] == 900 - confirm_reserve  # the last stage gets everything left before the confirmation
    search = max(x.get("target_requests", 0) for x in steps if x["kind"] == "candidate_scored")
    assert search <= 900
    # demos of every label make the target right: the result is a few-shot candidate, confirmed beyond noise
    assert s["best_proposer"].startswith("fewshot/") and s["best_test"] == 1.0
    r = s["result"]
    assert r["replaced_baseline"] and r["winner_id"] == s["best_id"] and r["p_value"] < 0.05 and r["n_confirm"] == held
    assert "replaces the baseline" in r["reading"]
    assert [x["kind"] for x in steps].index("winner_chosen") < [x["kind"] for x in steps].index("test_scored")
    cands = store.candidates(run_id)
    confirmed = cands[cands["confirm_score"].notna()]
    variants = {x["candidate_id"] for x in steps if x["kind"] == "simplified"}
    assert set(confirmed["id"]) == {1, r["winner_id"]} | variants  # the baseline, the winner, the variants tried
    # racing: most candidates were stopped on a few examples; the leaderboard says on how many
    n_search = int(cands.loc[cands["id"] == 1, "n_scored"].iloc[0])
    searched = cands[~cands["proposer"].str.startswith(("simplify/", "part/"))]  # after the decision: not raced on val
    assert (searched["n_scored"] < n_search).sum() >= len(searched) // 3 and searched["n_scored"].notna().all()
    # the instructions written for the demos carry the leader's demos: they are judged as they would ship
    second = [x["candidate_id"] for x in steps if x["kind"] == "candidate_proposed" and x["round"] > 0
              and x["proposer"] == "fake/a-prop" and x["round"] > stages[1]["stage"] + 1]
    leader_demos = list(cands.loc[cands["id"] == s["best_id"], "demos"].iloc[0])
    for cid in second:
        assert list(cands.loc[cands["id"] == cid, "demos"].iloc[0]) == leader_demos
    metas = [x["meta_prompt"] for x in steps if x["kind"] == "proposal_made"]
    assert "solved training example" in metas[-1] and "solved training example" not in metas[0]
    # what each stage did and gave, per run
    report = {st["stage"]: st for st in s["stages"]}
    assert report["demos"]["result_from_here"] and report["instructions"]["proposer_calls"] >= 1
    assert report["instructions"]["asked"] == 4 * report["instructions"]["proposer_calls"]
    assert report["instructions"]["usable"] == report["instructions"]["candidates"]


def _clone_or_contender(contender: bool):
    """A target that answers 'positive' to everything, or with 'ALT' in its instruction 'negative' to everything:
    as accurate (30 of each), but on other examples, so the race cannot tell them apart."""
    def tgt(messages, params):
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        return "negative" if "ALT" in system else "positive"

    def prop(messages, params):
        k = int(hashlib.sha256(messages[-1]["content"].encode()).hexdigest(), 16) % 997
        word = "ALT" if contender else "Pick"
        return f"<prompt>{word} the label, try {k}.</prompt><prompt>{word} one label, attempt {k}.</prompt>"

    return make_spec(fakes.script("cc-target", tgt)), make_spec(fakes.script(f"cc-prop-{contender}", prop))


@pytest.mark.parametrize("contender", [False, True])
def test_a_proposing_stage_stops_on_evidence(store, dataset, contender):
    """The instruction stage goes on while its rounds write contenders (candidates the race cannot tell from the
    leader) and stops after stage_patience rounds of clones the race drops, handing its calls on."""
    tgt, prop = _clone_or_contender(contender)
    cfg = planning.make_config(dataset, tgt, [prop], seed=3, rounds=5, minibatch_size=6, budget=2000, candidates=2,
                           demos_share=0.0, demo_instructions_share=0.0, edits_share=0.0, stage_patience=2)
    s = runs.execute(store, (run_id := runs.create_run(store, cfg)))
    arena_rounds = {c for c in store.candidates(run_id).query("proposer == 'fake/cc-prop-%s'" % contender)["round"]}
    finished = [x for x in store.steps(run_id) if x["kind"] == "round_finished"]
    assert not any(x["improved"] for x in finished)  # neither ever beats the baseline
    assert len(arena_rounds) == (5 if contender else 2)
    assert s["reason"] == ("rounds" if contender else "patience")


def test_two_rounds_of_few_usable_proposals_are_not_evidence(store, dataset):
    """Patience counts raced proposals too: a proposer that writes 2 usable of the 4 asked per round is not given up
    after stage_patience (2) rounds, but once the stage has raced patience x candidates (8) of them without progress."""
    tgt, prop = _clone_or_contender(False)
    cfg = planning.make_config(dataset, tgt, [prop], seed=3, rounds=6, minibatch_size=6, budget=2000, candidates=4,
                               demos_share=0.0, demo_instructions_share=0.0, edits_share=0.0, stage_patience=2)
    s = runs.execute(store, (run_id := runs.create_run(store, cfg)))
    arena_rounds = {c for c in store.candidates(run_id).query("proposer == 'fake/cc-prop-False'")["round"]}
    assert len(arena_rounds) == 4 and s["reason"] == "patience"
    asked = [x["asked"] for x in store.steps(run_id) if x["kind"] == "proposal_made"]
    assert asked == [4] * 4 and s["stages"][0]["asked"] == 16 and s["stages"][0]["usable"] == 8


def test_proposals_asked_are_read_from_stored_data_never_from_the_meta_prompts_wording(store, dataset):
    """A proposal step stored before it recorded how many prompts it asked for (config version 4) counts what the run's
    stored config asks of every call (its candidates setting), whatever its meta-prompt says: a template edited so
    that it no longer reads "Reply with exactly N instructions" still reports them asked."""
    tgt, prop = _clone_or_contender(False)
    cfg = planning.make_config(dataset, tgt, [prop], seed=3, rounds=2, minibatch_size=6, budget=2000, candidates=3,
                               demos_share=0.0, demo_instructions_share=0.0, edits_share=0.0)
    s = runs.execute(store, (run_id := runs.create_run(store, cfg)))
    calls = s["stages"][0]["proposer_calls"]
    assert calls >= 1 and s["stages"][0]["asked"] == 3 * calls
    with store.transaction() as con:
        for seq, data in con.execute("SELECT seq, data FROM steps WHERE run_id = ? AND kind = 'proposal_made'",
                                     [run_id]).fetchall():
            step = json.loads(data)
            del step["asked"]  # as stored before the count was recorded
            step["meta_prompt"] = "Write better instructions, one per <prompt> tag."  # an edited template
            con.execute("UPDATE steps SET data = ? WHERE run_id = ? AND seq = ?", [json.dumps(step), run_id, seq])
    again = results.summarize(store, run_id)
    assert again["stages"] == s["stages"]
    assert [(p["asked"], p["written"], p["usable"]) for p in again["proposers"]] == \
        [(p["asked"], p["written"], p["usable"]) for p in s["proposers"]]


def test_a_stage_that_finds_nothing_hands_its_calls_on(store, dataset):
    run_id, s = run(store, dataset, budget=1200, rounds=4, demo_instructions_share=0.0, edits_share=0.0, candidates=2)
    stages = {x["strategy"]: x for x in store.steps(run_id) if x["kind"] == "stage_started"}
    assert set(stages) == {"arena", "fewshot"}
    rounds = {x["round"] for x in store.steps(run_id) if x["kind"] == "round_finished"}
    arena_rounds = {c for c in store.candidates(run_id).query("proposer == 'fake/a-prop'")["round"]}
    assert len(arena_rounds) == 2  # two rounds of clones the race dropped: the stage ended (stage patience 2)
    reserve = 4 * _held_back(store, run_id)  # the baseline, the finalist, two variants of the result
    left_at_demos = 1200 - reserve
    n_search = int(store.candidates(run_id).query("id == 1")["n_scored"].iloc[0])
    first_cap = stages["arena"]["target_cap"]
    assert first_cap - n_search <= 0.3 / 0.7 * (left_at_demos - n_search) + 1  # its share of what was left
    assert stages["fewshot"]["target_cap"] == left_at_demos  # the demo stage got everything the first did not use
    assert len(rounds) >= 3


def test_auto_without_proposers_searches_demos_only(store, dataset):
    run_id, s = run(store, dataset, proposers=[], budget=600)
    stages = [x["strategy"] for x in store.steps(run_id) if x["kind"] == "stage_started"]
    assert stages == ["fewshot"] and s["result"]["replaced_baseline"]


def test_auto_without_proposers_refuses_demos_it_would_drop(store, dataset):
    """--demos attaches a fixed set to proposed instructions; with no proposers there are none, and the
    set would vanish without a word. The message names both ways out."""
    tgt = specs()[0]
    with pytest.raises(PromptlabError, match="drop --demos .* or add --proposers"):
        planning.make_config(dataset, tgt, [], demos="per-label")
    assert planning.make_config(dataset, tgt, [], demos="none").strategy == "auto"


def test_the_baseline_stays_when_the_search_winner_was_lucky(store, tmp_path):
    """A prompt that is right only on the search part of val wins the search, but the held-back examples
    show no gain: the result is the baseline, and the gap between the two scores is reported."""
    ds = sentiment_dataset(store, tmp_path, neutral=40)
    tgt, prop, crit, edit = specs()
    cfg = planning.make_config(ds, tgt, [prop], seed=3, strategy="arena", rounds=1, minibatch_size=6)
    _, ctx = planning.build(store, cfg, "probe")
    lucky_texts = set(ctx.valset["text"])

    def lucky_target(messages, params):
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        text = messages[-1]["content"]
        truth = "positive" if "great" in text else ("negative" if "awful" in text else "neutral")
        return truth if "LUCKY" in system and text in lucky_texts else "positive"

    def lucky_prop(messages, params):
        return "<prompt>LUCKY labels.</prompt><prompt>Plain labels.</prompt>"

    cfg = planning.make_config(ds, make_spec(fakes.script("lucky-target", lucky_target)),
                           [make_spec(fakes.script("lucky-prop", lucky_prop))], seed=3, strategy="arena", rounds=1,
                           minibatch_size=6)
    run_id = runs.create_run(store, cfg)
    s = runs.execute(store, run_id)
    r = s["result"]
    assert not r["replaced_baseline"] and s["best_id"] == 1 and s["best_proposer"] == "baseline"
    assert "did not score higher, so the result is the baseline" in r["reading"] and r["leader_id"] != 1
    assert report.leader_line(s) is None  # the leader did not lead on the held-back examples: nothing to offer
    assert r["search_score"] == 1.0 and r["confirm_score"] < 0.6 and r["gap"] > 0.4
    assert "gap" in report.result_line(s)
    board = results.leaderboard(store, run_id)
    assert board.iloc[0]["val_score"] == 1.0 and board.iloc[0]["confirm_score"] < 0.6  # overfit, shown


def test_a_budget_that_confirms_the_baseline_but_not_the_finalist_keeps_the_baseline(store, dataset, monkeypatch):
    """When what is left of the budget pays for the baseline's confirmation but not the finalist's, the run ends
    cleanly with the baseline as its result and says why. (A strategy's reserve normally holds both; here it is
    made to hold the baseline's share only, so the search leaves one request short of the finalist's.)"""
    tgt = specs()[0]
    prop = make_spec(fakes.script("magic-prop", lambda messages, params: "<prompt>Use MAGIC to label it.</prompt>"))
    _, ctx = planning.build(store, planning.make_config(dataset, tgt, [prop], seed=3, strategy="arena"), "probe")
    n_search, n_confirm = len(ctx.valset), len(ctx.confirmset)
    monkeypatch.setattr(PoolStrategy, "confirm_reserve", lambda self, n, prefer="score": n)  # the baseline's share only
    # the baseline and the finalist on the search examples, the baseline on the held-back ones, and one request
    # short of the finalist's confirmation
    budget = 2 * n_search + 2 * n_confirm - 1
    run_id, s = run(store, dataset, proposers=[prop], strategy="arena", rounds=1, budget=budget, candidates=1)
    steps = store.steps(run_id)
    cands = store.candidates(run_id).set_index("id")
    finalist = int(cands.index[cands["proposer"] != "baseline"][0])
    assert cands.loc[finalist, "val_score"] == 1.0 > cands.loc[1, "val_score"]  # it beat the baseline in the search
    assert [x["candidate_id"] for x in steps if x["kind"] == "confirmed"] == [1]  # the baseline only
    assert s["status"] == "finished" and s["best_id"] == 1 and s["best_proposer"] == "baseline"
    r = s["result"]
    assert r["winner_id"] == r["reference_id"] == 1 and not r["replaced_baseline"] and r["p_value"] is None
    assert f"could not pay for confirming finalist #{finalist}" in r["reading"] and "the result is the baseline" in r["reading"]
    assert steps[-1]["kind"] == "run_finished" and steps[-1]["best_id"] == 1


def test_racing_tries_several_times_more_candidates_on_the_same_budget(store, dataset):
    def many(messages, params):
        k = int(hashlib.sha256(messages[-1]["content"].encode()).hexdigest(), 16) % 9973
        return "".join(f"<prompt>Variant {k}-{i}: pick the label.</prompt>" for i in range(4))

    prop = make_spec(fakes.script("many", many))
    counts = {}
    for gate in ("race", "off"):
        run_id, s = run(store, dataset, proposers=[prop], strategy="arena", gate=gate, minibatch_size=4, rounds=20,
                        budget=400, candidates=4, arena=1, confirm=0.0)
        scored = [x for x in store.steps(run_id) if x["kind"] == "candidate_scored" and x["status"] != "over budget"]
        counts[gate] = len(scored)
    assert counts["race"] >= 2.5 * counts["off"]


def test_proposers_see_rejected_candidates_and_their_repeats_are_dropped(store, dataset):
    def repeater(messages, params):
        return "<prompt>Pick the label, please.</prompt><prompt>Pick the label please!</prompt>"

    prop = make_spec(fakes.script("repeater", repeater))
    run_id, s = run(store, dataset, proposers=[prop], strategy="arena", rounds=2, patience=None, arena=1)
    cands = store.candidates(run_id)
    round2 = cands[cands["round"] == 2]
    assert round2.empty  # the second round's proposals repeat a rejected one: dropped
    made = [x for x in store.steps(run_id) if x["kind"] == "proposal_made"]
    assert made[1]["dropped"].get("repeats_rejected", 0) + made[1]["dropped"].get("duplicate", 0) == 2
    meta2 = made[1]["meta_prompt"]
    assert "did worse" in meta2 and "Pick the label, please." in meta2


def test_the_meta_prompt_names_the_data_language(store, tmp_path):
    rows = ["text,label"] + [f"Отличная вещь номер {i},positive" for i in range(20)] + \
        [f"Ужасная вещь номер {i},negative" for i in range(20)]
    path = tmp_path / "ru.csv"
    path.write_text("\n".join(rows), encoding="utf-8")
    ds = import_dataset(store, path)[0]
    tgt, prop, _, _ = specs()
    for mode, expected in (("english", "write each instruction in English"), ("data", "write each instruction in Russian"),
                           ("off", None)):
        run_id, _ = run(store, ds, proposers=[prop], strategy="arena", rounds=1, language=mode, confirm=0.0)
        meta = [x for x in store.steps(run_id) if x["kind"] == "proposal_made"][0]["meta_prompt"]
        if expected:
            assert "The texts are in Russian" in meta and expected in meta
        else:
            assert "The texts are in" not in meta


def test_settings_are_declared_once_and_checked_from_their_declaration(store, dataset):
    tgt, prop, _, _ = specs()
    with pytest.raises(PromptlabError, match="confirm must be at most 0.8"):
        planning.make_config(dataset, tgt, [prop], confirm=0.9)
    with pytest.raises(PromptlabError, match="gate must be race or ci or mean or off"):
        planning.make_config(dataset, tgt, [prop], gate="magic")
    with pytest.raises(PromptlabError, match="language must be english or data or off"):
        planning.make_config(dataset, tgt, [prop], language="klingon")
    with pytest.raises(PromptlabError, match="a share above 0"):
        planning.make_config(dataset, tgt, [prop], instructions_share=0, demos_share=0, demo_instructions_share=0,
                         edits_share=0)
    from promptlab.cli import build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["optimize"].format_help()
    for s in registry.all_settings().values():
        assert s.cli_flag in help_text  # every declared setting has its flag, none written by hand
    cfg = planning.make_config(dataset, tgt, [prop])
    assert cfg.strategy == "auto" and cfg.version == 4
    assert cfg.strategy_params["gate"] == "race" and cfg.strategy_params["confirm"] == 0.5  # defaults stored too
    assert cfg.strategy_params["finalists"] == 1 and cfg.strategy_params["candidates"] == 4


def test_runs_stored_before_racing_replay_with_their_old_gate(store, dataset):
    tgt, prop, _, _ = specs()
    rec = planning.make_config(dataset, tgt, [prop], strategy="arena").to_record()
    rec.pop("version")
    rec["strategy_params"] = {"arena_k": 2, "candidates_per_proposer": 2}  # what make_config stored back then
    old = planning.RunConfig.from_record(rec)
    strategy, ctx = planning.build(store, old, "old")
    assert old.version == 1 and strategy.gate == "ci" and strategy.minibatch_size == 24 and len(ctx.confirmset) == 0
    assert strategy.show_rejected == 0 and strategy.language == "off"
    assert strategy.arena == 2 and strategy.candidates == 2  # stored as arena_k and candidates_per_proposer


def test_projection_states_racing_and_the_confirmation(store, dataset):
    tgt, prop, _, _ = specs()
    cfg = planning.make_config(dataset, tgt, [prop], budget=900, minibatch_size=6)
    proj = planning.projection(store, cfg)
    line = planning.projection_line(proj)
    _, ctx = planning.build(store, cfg, "p")
    assert proj["n_confirm"] == len(ctx.confirmset) and abs(proj["n_confirm"] - 0.5 * 35) <= 1
    assert proj["confirm_calls"] == 4 * proj["n_confirm"]  # the baseline, the one finalist, two variants of the result
    assert "racing scores a candidate on ~" in line and "held back to confirm" in line
    assert proj["candidates_in_budget"] > proj["candidates_full_val"]


def test_a_semi_automatic_auto_run_pauses_after_each_stage_round(store, dataset):
    from promptlab import review

    tgt, prop, crit, edit = specs()
    cfg = planning.make_config(dataset, tgt, [prop], seed=3, rounds=1, minibatch_size=6, review="rounds", critic=crit,
                           editor=edit, budget=900)
    run_id = runs.create_run(store, cfg)
    paused = []
    while runs.execute(store, run_id)["status"] == "paused":
        r = review.paused_at(store, run_id).round
        paused.append(r)
        store.add_decision(run_id, r, "continue", None, None, "analyst")
    stages = [x["strategy"] for x in store.steps(run_id) if x["kind"] == "stage_started"]
    assert stages == ["arena", "fewshot", "arena", "gradient"] and paused == [1, 2, 3, 4]
    assert store.run_row(run_id)["status"] == "finished"


def test_a_race_under_way_finishes_past_its_stage_cap(store, dataset):
    """A stage's cap stops it from starting candidates; one already racing finishes within the run's budget,
    so no promising candidate is cut off half-scored at a stage's end (only the run's budget can do that)."""
    for budget in (520, 610, 700, 790):  # stage caps fall at different points of the races
        run_id, s = run(store, dataset, budget=budget)
        steps = store.steps(run_id)
        last_stage = max(i for i, x in enumerate(steps) if x["kind"] == "stage_started")
        over = [i for i, x in enumerate(steps) if x["kind"] == "candidate_scored" and x["status"] == "over budget"]
        assert all(i > last_stage for i in over)
        search = max(x.get("target_requests", 0) for x in steps if x["kind"] == "candidate_scored")
        assert search <= budget - 3 * 18 and s["status"] == "finished"


def test_the_confirmation_test_is_one_sided():
    d = [1.0] * 14 + [-1.0] * 5  # 14 examples better, 5 worse
    two, one = stats.sign_flip_p(d), stats.sign_flip_p(d, alternative="greater")
    assert one == pytest.approx(two / 2, rel=0.01) and one < 0.05 < two
    assert stats.sign_flip_p([-1.0] * 10, alternative="greater") == 1.0  # worse is never "better"
    graded = [0.5, 0.25, 1.0, 0.75, 0.5, 0.25, 0.5, -0.25, 0.5, 1.0, 0.5, 0.25, 0.75, 0.5, 0.5, 0.25, 0.5, 0.5]
    assert stats.sign_flip_p(graded, alternative="greater") < stats.sign_flip_p(graded)


def test_a_race_past_the_stage_cap_is_held_to_the_run_budget_only(store, dataset):
    from promptlab.prompt import PromptTemplate
    from promptlab.optimize.pool import Pool
    from promptlab.optimize.racing import Gate, race, score_all

    tgt, prop, _, _ = specs()
    cfg = planning.make_config(dataset, tgt, [prop], seed=3, strategy="arena", budget=200, minibatch_size=6)
    run_id = runs.create_run(store, cfg)
    _, ctx = planning.build(store, cfg, run_id)
    pool = Pool()
    list(pool.score_start(ctx, [PromptTemplate.from_text("Label it.")]))
    better, _ = pool.add(1, PromptTemplate.from_text("Use MAGIC."), "p", "p")
    ctx.stage_cap = ctx.counters.target_requests + 6  # room for the first rung only
    steps = list(race(ctx, pool, [better], Gate("race", 0.9, 4, 6)))
    assert [s.status for s in steps] == ["evaluated"] and steps[0].n_scored == len(ctx.valset)
    ctx.stage_cap = ctx.counters.target_requests + 5  # no room for a first rung: the stage cannot start it
    late, _ = pool.add(1, PromptTemplate.from_text("Use MAGIC now."), "p", "p")
    assert [s.status for s in race(ctx, pool, [late], Gate("race", 0.9, 4, 6))] == ["over budget"]


@pytest.mark.parametrize("metric", ["exact", "judge"])
def test_auto_works_on_reference_scorers_and_the_judge(store, tmp_path, metric):
    """auto on a dataset of reference answers, scored by a scorer and by an LLM judge: every stage runs on the
    per-example scores (racing and the confirmation compare them paired)."""
    import test_review as R

    path = tmp_path / "qa.csv"
    path.write_text("question,answer\n" + "\n".join(f'"{q}","{a}"' for q, a in R.REF_ROWS * 5) + "\n", encoding="utf-8")
    ds = import_dataset(store, path, kind="reference", scoring={"metric": "exact"})[0]
    target = make_spec(fakes.script("auto-ref-target", R.ref_target))
    prop = make_spec(fakes.script("auto-ref-prop", R.ref_proposer))
    judge = make_spec(fakes.script("auto-ref-judge", R.judge_reply))
    extra = {"judge": {"model": judge.to_record(), "rubric": "Short answers are best.", "lo": 1, "hi": 5}} \
        if metric == "judge" else {}
    cfg = planning.make_config(ds, target, [prop], seed=1, rounds=1, minibatch_size=4, metric=metric, budget=400,
                           critic=prop, editor=prop, **extra)
    run_id = runs.create_run(store, cfg)
    s = runs.execute(store, run_id)
    stages = [x["strategy"] for x in store.steps(run_id) if x["kind"] == "stage_started"]
    assert stages == ["arena", "fewshot", "gradient"] and s["status"] == "finished"
    assert s["result"]["replaced_baseline"] and "BRIEF" in s["best_prompt"] and s["best_test"] == 1.0


def test_a_budget_that_cannot_also_hold_the_confirmation_is_refused(store, dataset):
    """The baseline on search val (17) plus the decision's reserve (4 x 18: the baseline, the finalist and two variants
    of the result on the held-back examples) must fit in the budget."""
    tgt, prop, _, _ = specs()
    proj = planning.projection(store, planning.make_config(dataset, tgt, [prop], budget=40))
    problem = planning.budget_problem(proj, "--budget")
    assert problem and "hold back 72" in problem and "simplifying the result" in problem and "lower --confirm" in problem
    assert planning.budget_problem(planning.projection(store, planning.make_config(dataset, tgt, [prop], budget=200))) is None


@pytest.mark.parametrize("flag", ["confirm", "gate_level", "confidence"])
def test_a_setting_that_is_not_a_finite_number_is_refused(store, dataset, flag):
    tgt, prop, _, _ = specs()
    with pytest.raises(PromptlabError, match="must be"):
        planning.make_config(dataset, tgt, [prop], **{flag: float("nan")})


def test_projection_floor_follows_the_confidence_and_the_race_maximum_keeps_half_rounded_up(store, dataset):

    tgt, prop, _, _ = specs()
    floors = {}
    for confidence in (0.9, 0.99):
        line = planning.projection_line(planning.projection(store, planning.make_config(dataset, tgt, [prop], confidence=confidence)))
        floors[confidence] = float(line.split("gain of at least ~")[1].split(" ")[0])
    assert floors[0.9] < floors[0.99]
    # 5 candidates on 100 examples in rungs 12, 24, 48, 96, 100: 5, 3, 2, 1, 1 go on (ceil of half)
    proj = PoolStrategy(gate="race", minibatch_size=12).race_projection(100, 5)
    assert proj["max"] == 12 * 5 + 12 * 3 + 24 * 2 + 48 * 1 + 4 * 1


def test_a_race_the_budget_ends_records_every_candidate_still_running(store, dataset):
    """When the budget cannot pay a rung, every candidate still in the race is marked 'over budget' (none left
    'proposed' after calls were spent on it), and only then does the budget end the search."""
    from promptlab.prompt import PromptTemplate
    from promptlab.optimize.base import BudgetExhausted
    from promptlab.optimize.pool import Pool
    from promptlab.optimize.racing import Gate, race, score_all

    tgt, prop, _, _ = specs()
    cfg = planning.make_config(dataset, tgt, [prop], seed=3, strategy="arena", budget=60, minibatch_size=6, confirm=0.0)
    run_id = runs.create_run(store, cfg)
    _, ctx = planning.build(store, cfg, run_id)
    pool = Pool()
    list(pool.score_start(ctx, [PromptTemplate.from_text("Label it.")]))
    cands = [pool.add(1, PromptTemplate.from_text(f"Use MAGIC {i}."), "p", "p")[0] for i in range(4)]
    steps = []
    with pytest.raises(BudgetExhausted):
        for step in score_all(ctx, pool, cands, Gate("race", 0.9, 4, 6)):
            steps.append(step)
    assert sorted(s.candidate_id for s in steps) == [c.id for c in cands]
    assert all(s.status in ("over budget", "gated", "evaluated") for s in steps)
    assert any(s.status == "over budget" for s in steps)


def test_runs_stored_before_the_instruction_search_replay_with_its_old_behaviour(store, dataset):
    tgt, prop, _, _ = specs()
    rec = planning.make_config(dataset, tgt, [prop]).to_record()
    rec["version"] = 2
    for key in ("demo_instructions_share", "evidence", "factorial_start", "angles"):
        rec["strategy_params"].pop(key, None)  # settings a version-2 record did not have
    old = planning.RunConfig.from_record(rec)
    strategy, _ = planning.build(store, old, "old")
    assert strategy.demo_instructions is None and not strategy.evidence
    assert not strategy.demos_stage.factorial_start and not strategy.instructions.angles
    new, _ = planning.build(store, planning.make_config(dataset, tgt, [prop]), "new")
    assert new.demo_instructions is not None and new.evidence and new.demos_stage.factorial_start


def test_the_trajectory_chart_shades_the_stages_and_names_the_one_the_result_came_from(store, dataset):
    from promptlab import charts

    run_id, s = run(store, dataset, budget=900)
    stages = s["stages"]
    assert results.result_stage(stages) == "demos"
    spans = [st["span_requests"] for st in stages]
    assert all(a <= b for a, b in spans) and all(spans[i][1] <= spans[i + 1][0] + 1e-9 for i in range(len(spans) - 1))
    for x in ("round", "target_requests"):
        fig = charts.score_trajectories(store.candidates(run_id), x=x, stages=stages)
        labels = [a.text for a in fig.layout.annotations]
        assert "demos (the result)" in labels and "instructions" in labels
        assert len(fig.layout.shapes) == len([st for st in stages if st["candidates"]])
