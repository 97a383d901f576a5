"""The Objective contract, held by every way of scoring (label metrics, reference scorers, the judge, human grades)."""
import math

import numpy as np
import pandas as pd
import pytest

import fakes
from promptlab.models import make_spec
from promptlab.scoring import (HumanGrades, Judge, JudgeScore, JudgeSettings, Objective, ReferenceScore, judge_record,
                               metric_spec, parse_metric, parse_scale, parse_scorer, save_scoring)
from promptlab.scoring.objective import ObjectiveError

LABELS = ("billing", "technical")


def _judge_score(name: str = "scoring-judge", reply: str = "Fine.\nScore: 4") -> JudgeScore:
    return JudgeScore(judge=Judge(make_spec(fakes.script(name, lambda messages, params: reply)), "5: right. 1: wrong.",
                                  1, 5))


OBJECTIVES = {
    "accuracy": parse_metric("accuracy", LABELS),
    "recall:billing": parse_metric("recall:billing", LABELS),
    "macro_f1": parse_metric("macro_f1", LABELS),
    "accuracy with a floor": parse_metric("accuracy; precision:billing>=0.5", LABELS),
    "exact": ReferenceScore(parse_scorer("exact")),
    "token_f1": ReferenceScore(parse_scorer("token_f1")),
    "judge": _judge_score(),
    "grades 1-5": HumanGrades(1, 5),
}


def _rows(objective, replies, golds) -> pd.DataFrame:
    """Rows as evaluate builds them: each reply read by the objective; pending scores filled as a grader would."""
    out = []
    for i, (reply, gold) in enumerate(zip(replies, golds)):
        r = objective.read(reply, gold, gold.casefold(), LABELS)
        score = r.score if r.score is not None else (1.0 if gold.casefold() in reply.casefold() else 0.25)
        out.append({"example_idx": i, "gold_norm": gold.casefold(), "pred": r.pred, "score": score})
    return pd.DataFrame(out)


REPLIES = ["billing", "Technical.", "I think it is billing", "", "no idea", "technical", "billing", "billing"]
GOLDS = ["billing", "technical", "billing", "technical", "billing", "billing", "technical", "billing"]


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_keeps_the_contract(name):
    obj = OBJECTIVES[name]
    assert isinstance(obj, Objective)
    assert obj.describe() and obj.spec and obj.name and obj.invalid_means
    assert obj.outcome in ("pred", "score")
    rows = _rows(obj, REPLIES, GOLDS)  # read never raises, an empty reply included
    lo_range, hi_range = obj.range
    value = obj.value(rows)
    assert (lo_range - 2) <= value <= hi_range if "floor" in name else lo_range <= value <= hi_range
    lo, hi = obj.interval(rows, 0.95)
    assert lo <= value + 1e-9 and value - 1e-9 <= hi or "floor" in name
    narrow = obj.interval(rows, 0.5)
    assert hi - lo >= narrow[1] - narrow[0] - 1e-9
    assert 0 < obj.n_relevant(rows) <= len(rows)
    per = obj.per_example(rows)
    if per is not None:  # a mean over examples: the per-example shares average to the value
        assert len(per) == obj.n_relevant(rows)
        assert per.mean() == pytest.approx(value)
    empty = rows.iloc[0:0]
    assert math.isnan(obj.value(empty))
    assert all(math.isnan(x) for x in obj.interval(empty))
    assert isinstance(obj.floors_on(rows), list)


def test_a_label_metric_reads_replies_as_labels_and_the_others_keep_the_reply():
    acc = OBJECTIVES["accuracy"]
    assert acc.read("Technical.", "technical", "technical", LABELS) == ("technical", "normalized", 1.0)
    assert acc.read("no idea", "technical", "technical", LABELS) == (None, "none", 0.0)
    assert acc.reads_labels and acc.outcome == "pred"
    exact = OBJECTIVES["exact"]
    assert exact.read(" Paris ", "Paris", "paris", ()) == ("Paris", "scored", 1.0)
    assert not exact.reads_labels and exact.outcome == "score"
    assert OBJECTIVES["judge"].read("Paris", "Paris", "paris", ()) == ("Paris", "judged", None)  # graded in finish
    assert OBJECTIVES["grades 1-5"].read("Paris", "", "", ()) == ("Paris", "output", None)  # graded by hand later
    assert OBJECTIVES["grades 1-5"].failure_score is None and exact.failure_score == 0.0


def test_whole_set_metrics_and_floors_have_no_per_example_form():
    rows = _rows(OBJECTIVES["macro_f1"], REPLIES, GOLDS)
    assert OBJECTIVES["macro_f1"].per_example(rows) is None
    assert OBJECTIVES["accuracy with a floor"].per_example(rows) is None
    assert OBJECTIVES["recall:billing"].n_relevant(rows) == GOLDS.count("billing")


def test_constant_answers_and_floors_read_from_rows():
    acc = parse_metric("recall:billing; precision:billing>=0.9", LABELS)
    rows = pd.DataFrame({"example_idx": range(20), "gold_norm": ["billing"] * 10 + ["technical"] * 10,
                         "pred": ["billing"] * 20, "score": [1.0] * 10 + [0.0] * 10})
    assert acc.constant(rows) == "billing"
    (floor,) = acc.floors_on(rows)
    assert floor == {"metric": "precision:billing", "value": 0.5, "floor": 0.9, "met": False}
    assert acc.value(rows) < acc.range[0]  # below the floor: under the range, by how far it falls short
    assert OBJECTIVES["exact"].constant(rows) is None and OBJECTIVES["exact"].floors_on(rows) == []


def test_the_judge_objective_grades_pending_rows_in_finish(tmp_path):
    from promptlab.store import Store

    obj = _judge_score("scoring-judge-finish")
    rows = [{"text": "q", "reply": "a", "gold": "a", "parse": "judged", "pred": "a", "score": None, "correct": False,
             "detail": None}]
    obj.finish(Store(tmp_path / "j.duckdb"), rows, True, None)
    assert rows[0]["score"] == pytest.approx(0.75) and rows[0]["detail"].startswith("4/5")


def test_human_grades_scale_to_the_unit_interval():
    assert list(HumanGrades(1, 5).scaled([1, 3, 5])) == [0.0, 0.5, 1.0]
    assert list(HumanGrades(0, 1).scaled([0, 1])) == [0.0, 1.0]


def test_judge_settings_merge_what_is_given_with_the_dataset_s_stored_judge():
    class Ds:
        scoring = {"judge": {"model": "stored", "rubric": "stored rubric", "lo": 0, "hi": 1}}

    assert judge_record(None, Ds()) is None  # nothing asked: the dataset's own judge applies unchanged
    assert judge_record(JudgeSettings(), Ds()) == {"model": "stored", "rubric": "stored rubric", "lo": 0, "hi": 1}
    assert judge_record(JudgeSettings("m", scale=(1, 5)), Ds()) == {"model": "m", "rubric": "stored rubric", "lo": 1,
                                                                    "hi": 5}
    Ds.scoring = None
    assert judge_record(JudgeSettings(rubric="r"), Ds())["lo"] == 1
    assert judge_record(JudgeSettings(), Ds())["rubric"].startswith("5:")
    assert parse_scale("0-1") == (0, 1)
    with pytest.raises(ObjectiveError, match="must look like 1-5"):
        parse_scale("five")


def test_save_scoring_writes_only_a_change(tmp_path):
    from promptlab.data import import_dataset
    from promptlab.store import Store

    store = Store(tmp_path / "s.duckdb")
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nCapital of France?,Paris\nTwo plus two?,4\nCapital of Peru?,Lima\n"
                    "Three times three?,9\nCapital of Chad?,N'Djamena\nLargest ocean?,Pacific\n", encoding="utf-8")
    ds = import_dataset(store, path, kind="reference")[0]
    checked, saved = save_scoring(store, ds, {"metric": "contains"})
    assert saved and checked == {"metric": "contains"}
    from promptlab.data import stored_dataset

    ds = stored_dataset(store, ds.id)
    assert save_scoring(store, ds, {"metric": "contains"}) == ({"metric": "contains"}, False)
    with pytest.raises(ObjectiveError):
        save_scoring(store, ds, {"metric": "accuracy"})  # a label metric on reference answers


def test_per_example_values_match_the_paired_comparison():
    """The races and the confirmation compare per-example shares: identical answers differ by exactly 0."""
    from promptlab.scoring.stats import compare

    acc = OBJECTIVES["accuracy"]
    rows = _rows(acc, REPLIES, GOLDS)
    c = compare(acc, rows, rows)
    assert c.diff == 0 and not c.significant
    assert np.isclose(acc.per_example(rows).mean(), acc.value(rows))


@pytest.mark.parametrize("name, arg, floors, spec", [
    ("accuracy", None, (), "accuracy"),
    ("accuracy", "billing", (), "accuracy"),  # a name without an argument drops it
    ("recall", "billing", (), "recall:billing"),
    ("numeric", "", (), "numeric"),  # an empty argument is left out
    ("recall:billing", None, [("precision:billing", 0.4)], "recall:billing; precision:billing>=0.4"),
    ("accuracy", None, ["precision:billing>=0.5", " "], "accuracy; precision:billing>=0.5"),  # a --constraint as typed
    ("numeric", "5%", (), "numeric:5%"),
    ("regex", r"\d+;\d+", (), r"regex:\d+;\d+"),
    ("json", "answer.city", (), "json:answer.city"),
    ("exact", "x", (), "exact"),
    ("judge", None, (), "judge"),
])
def test_one_function_writes_the_metric_spec_the_parsers_read(name, arg, floors, spec):
    """The pages and the CLI write a spec with metric_spec alone; what it writes parses back to the same spec."""
    assert metric_spec(name, arg, floors) == spec
    if name.split(":")[0] in ("accuracy", "recall"):
        assert parse_metric(spec, LABELS).spec == spec
    elif name != "judge":
        assert parse_scorer(spec).spec == spec
