"""What a prompt costs per call, cost ceilings and the cheapest result within noise, with scripted models whose
prompt tokens are the words they are sent (tests/fakes.py): properties by construction."""
import hashlib
import json

import pytest

import fakes
from conftest import sentiment_dataset
from promptlab import export, planning, results, runs
from promptlab.cost import Cost, CeilingError, broken, parse_ceilings
from promptlab.errors import PromptlabError
from promptlab.models import make_spec

LONG = "LONGMAGIC: label the sentiment. " + " ".join(["Read the whole text with care before you answer."] * 5)
SHORT = "SHORTMAGIC: label it."
HALF = "HALF: label it."


def target(messages, params):
    """LONGMAGIC and SHORTMAGIC are as accurate (every positive and negative, half the neutrals) but right on
    different neutrals; HALF is right on half the examples; anything else answers 'positive'."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    text = messages[-1]["content"]
    truth = "positive" if "great" in text else ("negative" if "awful" in text else "neutral")
    odd = int(hashlib.sha256(text.encode()).hexdigest(), 16) % 2
    if "LONGMAGIC" in system:
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
    assert results.cost_line(s).startswith("Cost per call (test): result ")
    assert "Cost per call (test)" in results.markdown_report(store, run_id)
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


def test_the_cheapest_within_noise_is_chosen_only_when_the_confirmation_cannot_separate_them(store, dataset):
    run_id, s = run(store, dataset, proposer(SHORT), "cost-short", prefer="cheap")
    r = s["result"]
    assert s["best_prompt"] == SHORT and r["replaced_baseline"]
    assert "cannot tell it from" in r["reading"] and "the cheaper, replaces the baseline" in r["reading"]
    cands = store.candidates(run_id).set_index("text")
    assert cands.loc[LONG, "confirm_score"] is not None and cands.loc[SHORT, "confirm_score"] is not None
    # the same search preferring the score keeps the first of the two equals, the long one
    _, best = run(store, dataset, proposer(SHORT), "cost-short", prefer="score")
    assert best["best_prompt"] == LONG
    # a cheaper candidate that is clearly worse is not chosen
    _, worse = run(store, dataset, proposer(HALF), "cost-half", prefer="cheap")
    assert worse["best_prompt"] == LONG and "cheaper" not in worse["result"]["reading"]


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
    with pytest.raises(PromptlabError, match="needs --confirm above 0"):
        planning.make_config(dataset, tgt, [tgt], prefer="cheap", confirm=0)
