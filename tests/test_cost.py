"""What a prompt costs per call, cost ceilings and the cheapest result within noise, with scripted models whose
prompt tokens are the words they are sent (tests/fakes.py): properties by construction."""
import hashlib
import json

import pytest

import fakes
from conftest import sentiment_dataset
from promptlab import export, planning, report, results, runs
from promptlab.cost import Cost
from promptlab.optimize.ceiling import CeilingError, broken, parse_ceilings
from promptlab.errors import PromptlabError
from promptlab.models import make_spec

LONG = "LONGMAGIC: label the sentiment. " + " ".join(["Read the whole text with care before you answer."] * 5)
SHORT = "SHORTMAGIC: label it."
SAME = "SAMEMAGIC: label it."
HALF = "HALF: label it."


def target(messages, params):
    """LONGMAGIC and SHORTMAGIC are as accurate (every positive and negative, half the neutrals) but right on
    different neutrals; HALF is right on half the examples; anything else answers 'positive'."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    text = messages[-1]["content"]
    truth = "positive" if "great" in text else ("negative" if "awful" in text else "neutral")
    odd = int(hashlib.sha256(text.encode()).hexdigest(), 16) % 2
    if "LONGMAGIC" in system or "SAMEMAGIC" in system:  # SAMEMAGIC: LONGMAGIC's answers, for a tenth of the tokens
        return truth if truth != "neutral" or odd else "positive"
    if "SHORTMAGIC" in system:
        return truth if truth != "neutral" or not odd else "positive"
    if "HALF" in system:
        return truth if odd else "positive"
    return "positive"


def proposer(second: str):
    """One prompt per call: LONG first; once LONG leads (it is in the history shown), `second`."""
    def reply(messages, params):
        meta = messages[-1]["content"]
        return f"<prompt>{second if 'LONGMAGIC' in meta else LONG}</prompt>"
    return reply


def both(messages, params):
    return f"<prompt>{LONG}</prompt><prompt>{HALF}</prompt>"


@pytest.fixture
def dataset(store, tmp_path):
    return sentiment_dataset(store, tmp_path, neutral=60)


def run(store, dataset, reply, name: str, **kw):
    cfg = planning.make_config(dataset, make_spec(fakes.script("cost-target", target)),
                           [make_spec(fakes.script(name, reply))], seed=3, strategy="arena", rounds=3, candidates=2,
                           **kw)
    run_id = runs.create_run(store, cfg)
    return run_id, runs.execute(store, run_id)


def test_every_scored_prompt_has_a_cost_per_call(store, dataset):
    run_id, s = run(store, dataset, both, "cost-both")
    board = results.leaderboard(store, run_id).set_index("id")
    base = board[board["proposer"] == "baseline"].iloc[0]
    n_words = len(base["text"].replace("{labels}", "positive, negative, neutral").split()) + 3  # "great thing 7"
    assert base["tokens_in"] == pytest.approx(n_words, abs=0.5) and base["tokens_out"] == 1
    assert base["latency_s"] is not None and base["latency_s"] >= 0
    long_ = board[board["text"] == LONG].iloc[0]
    assert long_["tokens_in"] > base["tokens_in"] + 30  # its words, on every call
    assert board["price_1k"].isna().all()  # fake models have no price in litellm's map
    # the result card, the report, runs show and every export carry the result's cost per call
    c = s["costs"]
    assert c["split"] == "test" and Cost.from_record(c["result"]).calls == s["n_test"]
    assert report.cost_line(s).startswith("Cost per call (test): result ")
    assert "Cost per call (test)" in report.markdown_report(store, run_id)
    sp = export.stored_prompt(store, run_id)
    assert sp.cost.calls == s["n_test"] and sp.cost_split == "test"
    assert json.loads(export.export(sp, "messages"))["cost_per_call"]["prompt_tokens"] == pytest.approx(sp.cost.prompt_tokens)
    for fmt in ("text", "python", "promptfoo"):
        assert "tokens in" in export.export(sp, fmt)


def test_a_cost_ceiling_is_respected_by_the_result(store, dataset):
    free_id, free = run(store, dataset, both, "cost-free")
    assert free["best_prompt"] == LONG  # without a ceiling the long prompt wins
    run_id, s = run(store, dataset, both, "cost-ceiling", ceilings=["tokens<=30"])
    board = results.leaderboard(store, run_id)
    over = board[board["text"] == LONG]
    assert len(over) and set(over["status"]) == {"over ceiling"} and over["val_score"].isna().all()
    assert s["best_prompt"] != LONG and Cost.from_record(s["costs"]["result"]).prompt_tokens <= 30
    metas = [x["meta_prompt"] for x in store.steps(run_id) if x["kind"] == "proposal_made"]
    assert all("at most 30 prompt tokens per call" in m for m in metas)
    assert store.run_row(run_id)["config"]["cost"] == {"ceilings": {"tokens": 30.0}}
    assert "cost" not in store.run_row(free_id)["config"]  # configs without one read as before


def test_a_cheaper_contender_ships_only_when_the_held_back_examples_show_it_no_worse(store, tmp_path):
    """After the decision, the cheapest candidate the search could not tell from the result is tried on the held-back
    examples: it ships (by default) when a non-inferiority test shows it no worse than the result by the margin, and
    "cannot tell them apart" is not enough. 400 rows: 70 held-back examples, enough to show identical answers are
    no worse by 0.05."""
    ds = sentiment_dataset(store, tmp_path, neutral=340)
    run_id, s = run(store, ds, proposer(SAME), "cost-same")
    r = s["result"]
    assert r["replaced_baseline"] and s["best_prompt"] == SAME and r["winner_id"] != s["best_id"]
    tried = {x["change"]: x for x in s["simplified"]}
    assert tried["cheaper contender"]["accepted"] and f"replaces #{r['winner_id']}" in tried["cheaper contender"]["reading"]
    assert Cost.from_record(s["costs"]["result"]).prompt_tokens < 20
    # preferring the score keeps the decided result, the long one
    _, best = run(store, ds, proposer(SAME), "cost-same", prefer="score")
    assert best["best_prompt"] == LONG and not best["simplified"]
    # as accurate but answering differently (half the neutrals each): the test cannot show it no worse, it stays out
    _, other = run(store, ds, proposer(SHORT), "cost-short")
    assert other["best_prompt"] == LONG
    assert all(not x["accepted"] for x in other["simplified"])
    # a cheaper candidate that is clearly worse does not ship
    _, worse = run(store, ds, proposer(HALF), "cost-half")
    assert worse["best_prompt"] == LONG and all(not x["accepted"] for x in worse["simplified"])


def test_ceilings_are_checked_with_a_message_that_says_how_to_write_them(store, dataset):
    assert parse_ceilings(["tokens<=300", "latency <= 0.5", "TOKENS<=200"]) == {"tokens": 200.0, "latency": 0.5}
    for bad, why in (("tokens>=300", "MEASURE<=VALUE"), ("tokens<=many", "not a number"), ("price<=0", "above 0"),
                     ("memory<=3", "MEASURE<=VALUE")):
        with pytest.raises(CeilingError, match=why):
            parse_ceilings([bad])
    assert broken(Cost(calls=3, prompt_tokens=359, latency_s=0.4), {"tokens": 300, "latency": 0.5, "price": 1}) == \
        ["tokens 359 > 300"]  # an unknown price breaks nothing
    tgt = make_spec(fakes.script("cost-target", target))
    with pytest.raises(PromptlabError, match="MEASURE<=VALUE"):
        planning.make_config(dataset, tgt, [tgt], ceilings=["tokens=>3"])
    assert "prefer" not in planning.make_config(dataset, tgt, [tgt], prefer="cheap").cost  # read as the default, simple
    assert planning.make_config(dataset, tgt, [tgt], prefer="score").cost == {"prefer": "score"}
    with pytest.raises(PromptlabError, match="prefer must be simple or score"):
        planning.make_config(dataset, tgt, [tgt], prefer="fastest")
