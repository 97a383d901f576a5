"""Constrained objectives and constant answers: recall of one label rewards answering it to everything; a floor on
another metric ranks such a prompt below every prompt that keeps the floor, and a constant answer is marked."""
import pytest

import fakes
from promptlab import planning, results, runs
from promptlab.cli import main
from promptlab.data import import_dataset
from promptlab.errors import PromptlabError
from promptlab.scoring.labels import constant_label, parse_metric
from promptlab.models import make_spec


def target(messages, params):
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    text = messages[-1]["content"]
    if "ALWAYS" in system:
        return "fraud"
    if "Careful" in system:  # catches two of the three kinds of fraud, and nothing else
        return "fraud" if ("stolen" in text or "charge" in text) else "ok"
    return "fraud" if "stolen" in text else "ok"  # the baseline catches one kind


def proposer(messages, params):
    return ("<prompt>ALWAYS answer fraud, whatever the message says.</prompt>"
            "<prompt>Careful: stolen cards and odd charges are fraud; answer with one label.</prompt>")


@pytest.fixture
def dataset(store, tmp_path):
    rows = ["text,label"]
    for i in range(10):
        rows += [f"card stolen {i},fraud", f"odd charge {i},fraud", f"weird login {i},fraud"]
    rows += [f"paid bill {i},ok" for i in range(60)]  # answering fraud to all: precision 30/90 = 0.33
    path = tmp_path / "fraud.csv"
    path.write_text("\n".join(rows) + "\n")
    return import_dataset(store, path)[0]


def search(store, ds, metric):
    tgt = make_spec(fakes.script("c-target", target))
    prop = make_spec(fakes.script("c-prop", proposer))
    cfg = planning.make_config(ds, tgt, [prop], metric=metric, strategy="arena", rounds=1, seed=1, confirm=0.0,
                           minibatch_size=12)
    run_id = runs.create_run(store, cfg)
    runs.execute(store, run_id)
    board = results.leaderboard(store, run_id)
    return run_id, board, results.summarize(store, run_id)


def row(board, needle):
    return board[board["text"].str.contains(needle)].iloc[0]


def test_recall_alone_crowns_the_constant_answer_and_marks_it(store, dataset):
    _, board, s = search(store, dataset, "recall:fraud")
    assert "ALWAYS" in s["best_prompt"]
    always = row(board, "ALWAYS")
    assert always["constant"] == "fraud" and always["val_score"] == 1.0
    assert row(board, "Careful")["constant"] == "" and not board["floors"].astype(bool).any()


def test_a_precision_floor_puts_the_constant_answer_below_every_prompt_that_keeps_it(store, dataset):
    run_id, board, s = search(store, dataset, "recall:fraud; precision:fraud>=0.4")
    assert "Careful" in s["best_prompt"] and s["metric"] == "recall:fraud; precision:fraud>=0.4"
    always, careful = row(board, "ALWAYS"), row(board, "Careful")
    assert always["constant"] == "fraud" and always["floors"].endswith("< 0.4")  # on the val examples it saw
    # below the range, by how far it falls short: stopped by the race on its first examples
    assert always["minibatch_score"] < 0 <= careful["val_score"] and always["status"] == "gated"
    assert careful["floors"] == "precision:fraud 1.000"
    # the proposers were told the floor in words
    metas = store.candidates(run_id)["meta_prompt"].dropna()
    assert any("provided that precision of label 'fraud'" in m for m in metas)


def test_eval_names_the_floor_and_the_constant_answer(store, dataset, capsys):
    store.save_model("c-target", make_spec(fakes.script("c-target", target), name="c-target").to_record())
    code = main(["eval", "--dataset", dataset.name, "--model", "c-target", "--split", "all", "--metric", "recall:fraud",
                 "--constraint", "precision:fraud>=0.4", "--prompt", "ALWAYS answer fraud.", "--db", str(store.path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "floor     precision:fraud 0.333 (at least 0.4: NOT met)" in out
    assert "constant  it answers 'fraud' to at least 95% of the examples" in out
    code = main(["optimize", "--dataset", dataset.name, "--target", "c-target", "--metric", "recall:fraud",
                 "--constraint", "precision:fraud>0.4", "--db", str(store.path)])
    assert code != 0 and "write it as METRIC>=VALUE" in capsys.readouterr().err


def test_floors_parse_round_trip_and_refuse_what_cannot_hold():
    m = parse_metric("recall:fraud", ["fraud", "ok"], ["precision:fraud>=0.4"])
    assert parse_metric(m.spec, ["fraud", "ok"]) == m and m.counts(["fraud"], ["fraud"]) is None
    for bad, msg in [("precision:fraud>=1.5", "never met"), ("precision:fraud>=nan", "finite"),
                     ("precision:nope>=0.3", "unknown label")]:
        with pytest.raises(PromptlabError, match=msg):
            parse_metric("recall:fraud", ["fraud", "ok"], [bad])
    assert constant_label(["a"] * 19 + ["b"]) == "a" and constant_label(["a"] * 18 + ["b"] * 2) is None
    assert constant_label([None] * 20) is None
    # a classifier on skewed data is not a constant answer: it gets the rare label's examples right
    gold = ["ok"] * 39 + ["fraud"]
    assert constant_label(gold, gold) is None and constant_label(["ok"] * 40, gold) == "ok"
    assert constant_label(["ok"] * 5) is None  # too few replies to say
