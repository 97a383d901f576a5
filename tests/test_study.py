"""A study with scripted models where the answer is known by construction."""
import hashlib
import json

import pytest

import fakes
from conftest import sentiment_dataset
from promptlab import study as S
from promptlab.errors import PromptlabError
from promptlab.models import make_spec


def target(messages, params):
    """Perfect with GOOD in its instruction, else always 'positive'."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    text = messages[-1]["content"]
    truth = "positive" if "great" in text else ("negative" if "awful" in text else "neutral")
    return truth if "GOOD" in system else "positive"


def good(messages, params):  # the same-family proposer knows the trick
    k = int(hashlib.sha256(messages[-1]["content"].encode()).hexdigest(), 16) % 89
    return f"<prompt>GOOD labelling, take {k}.</prompt><prompt>Plain labelling, take {k}.</prompt>"


def useless(messages, params):  # the cross-family one never does
    k = int(hashlib.sha256(messages[-1]["content"].encode()).hexdigest(), 16) % 89
    return f"<prompt>Label it, variant {k}.</prompt><prompt>Classify, variant {k}.</prompt>"


@pytest.fixture
def dataset(store, tmp_path):
    return sentiment_dataset(store, tmp_path)


def specs():
    tgt = make_spec(fakes.script("qwen-7b-target", target), family="qwen", size_b=7)
    same = make_spec(fakes.script("qwen-72b-prop", good), family="qwen", size_b=72)
    cross = make_spec(fakes.script("llama-70b-prop", useless), family="llama", size_b=70)
    return tgt, same, cross


def test_study_finds_the_answer_built_into_the_models(store, dataset):
    tgt, same, cross = specs()
    sid, reused = S.create_study(store, dataset, [tgt], [same, cross], seeds=3, mixes=[[same.label, cross.label]],
                                 rounds=2, budget=None, minibatch_size=8)
    assert not reused
    cells = {c.proposer: c for c in S.execute_study(store, sid)}
    assert set(cells) == {same.label, cross.label, f"{same.label} + {cross.label}"}
    s, c = cells[same.label], cells[cross.label]
    assert s.relation == "same family, bigger" and c.relation == "cross family"
    assert cells[f"{same.label} + {cross.label}"].relation == "mix"
    assert s.seeds == 3 and s.finished == 3 and s.n_test == len(dataset.split("test"))
    assert s.best_test == 1.0 and s.gain_mean == pytest.approx(1 - s.baseline_test)  # perfect vs always "positive"
    assert s.ci_low > 0.3 and s.p_value < 1e-4 and s.worse_on == 0 and s.better_on == round(s.gain_mean * s.n_test)
    assert c.gain_mean == 0 and c.ci_low == 0 == c.ci_high and c.p_value == 1.0
    assert s.asked == c.asked > 0 and s.usable > 0 and s.written >= s.usable
    line = S.reading(list(cells.values()), tgt.label)
    assert same.label in line and "same family, bigger" in line
    # head to head: the same-family proposer's best prompts against the cross-family one's, paired by seed
    pairs = S.head_to_head(store, sid)
    assert len(pairs) == 3  # 3 proposer sets -> 3 pairs
    row = pairs[(pairs["first"] == cross.label) & (pairs["second"] == same.label)].iloc[0]
    assert row["seeds"] == 3 and row["n_test"] == s.n_test
    assert row["diff"] == pytest.approx(s.best_test - c.best_test) and row["ci_low"] > 0.3
    assert row["first_better_on"] == 0 and row["p_value"] < 1e-4
    assert (pairs["p_adj"] >= pairs["p_value"]).all()  # Holm over the target's 3 pairs
    assert "beats every other proposer head to head" in S.reading([s, c], tgt.label, pairs)
    # the mix (which includes the same-family proposer) is as perfect: a tie, so no ranking is claimed
    assert "cannot rank" in S.reading(list(cells.values()), tgt.label, pairs)
    # the study's runs are ordinary runs
    members = store.study_members(sid)
    assert len(members) == 9 and set(members["status"]) == {"finished"}
    # asking for the same grid again is the same study: nothing is re-run
    sid2, reused2 = S.create_study(store, dataset, [tgt], [same, cross], seeds=3, mixes=[[same.label, cross.label]],
                                   rounds=2, budget=None, minibatch_size=8)
    assert (sid2, reused2) == (sid, True)


def test_reading_says_when_the_data_cannot_tell():
    import pandas as pd

    def cell(p, g, lo, hi, pv=0.01, better=3, worse=2, seeds=3):
        return S.Cell("t", p, "f", "cross family", seeds, g, lo, hi, pv, 100, better, worse, 0.5, 0.5 + g, (), seeds)
    assert "cannot tell" in S.reading([cell("a", 0.02, -0.03, 0.07, 0.4), cell("b", 0.01, -0.04, 0.06, 0.6)], "t")
    assert "cannot rank" in S.reading([cell("a", 0.10, 0.02, 0.18), cell("b", 0.08, 0.01, 0.15)], "t")
    assert "cannot say" in S.reading([cell("a", 0.0, 0.0, 0.0, 1.0, 0, 0)], "t")
    assert "clears every other" in S.reading([cell("a", 0.30, 0.22, 0.38), cell("b", 0.01, -0.04, 0.06, 0.5)], "t")
    # a CI above 0 on a handful of examples is not enough when the paired test says otherwise
    assert "cannot tell" in S.reading([cell("a", 0.04, 0.01, 0.08, 0.125, 4, 0), cell("b", 0.0, -0.02, 0.02, 1.0)], "t")
    # every proposer worse than the baseline: said so, not "includes 0"
    assert "did worse than the baseline" in S.reading([cell("a", -0.05, -0.09, -0.01), cell("b", -0.1, -0.2, -0.05)], "t")
    # the top mean is noisy but another proposer clearly helps
    line = S.reading([cell("a", 0.10, -0.02, 0.22, 0.2), cell("b", 0.06, 0.03, 0.09, 0.001)], "t")
    assert "b (cross family) improves on the baseline" in line and "cannot rank" in line
    # unfinished proposers and too few seeds are caveats, and no winner is declared with one missing
    missing = S.Cell("t", "c", "f", "cross family", 0, None, None, None, None, 100, 0, 0, None, None, (), 0)
    line = S.reading([cell("a", 0.30, 0.22, 0.38), cell("b", 0.01, -0.04, 0.06, 0.5), missing], "t")
    assert "2 of 3 proposers" in line and "writes the best" not in line
    assert "fewer than 3 seeds" in S.reading([cell("a", 0.30, 0.22, 0.38, seeds=1)], "t")
    mute = S.Cell("t", "m", "f", "cross family", 3, 0.0, 0.0, 0.0, 1.0, 100, 0, 0, 0.5, 0.5, (), 3, 12, 0)
    assert "m wrote no usable prompt in any of its runs" in S.reading([cell("a", 0.30, 0.22, 0.38), mute], "t")
    # a mute proposer's 0 (the baseline kept) is not "the largest gain" over writers who lost a little
    line = S.reading([cell("a", -0.01, -0.05, 0.03, 0.6), mute], "t")
    assert "largest test gain is a's" in line
    # with the head-to-head comparisons, the ranking rests on them, not on interval overlap
    overlap = [cell("a", 0.10, 0.02, 0.18), cell("b", 0.06, 0.01, 0.12)]
    pair = {"target": "t", "first": "b", "second": "a", "seeds": 3, "n_test": 100, "diff": 0.04, "ci_high": 0.07,
            "p_value": 0.01, "second_better_on": 6, "first_better_on": 1}
    assert "beats every other" in S.reading(overlap, "t", pd.DataFrame([pair | {"ci_low": 0.01}]))
    assert "cannot rank" in S.reading(overlap, "t", pd.DataFrame([pair | {"ci_low": -0.01}]))
    assert "cannot rank" in S.reading(overlap, "t", pd.DataFrame([pair | {"ci_low": 0.01, "p_value": 0.2}]))


def test_bad_study_requests_are_refused(store, dataset):
    tgt, same, cross = specs()
    with pytest.raises(PromptlabError, match="seeds"):
        S.create_study(store, dataset, [tgt], [same], seeds=0)
    with pytest.raises(PromptlabError, match="not among --proposers"):
        S.create_study(store, dataset, [tgt], [same, cross], mixes=[["nobody", same.label]])
    # a budget too small to score even the baseline would make runs that finish having done nothing
    with pytest.raises(PromptlabError, match="cannot even score the baseline.*Raise it to at least"):
        S.create_study(store, dataset, [tgt], [same, cross], budget=5)
    assert store.list_studies().empty and store.list_runs().empty  # nothing half-written


def test_study_command_json_cells(store, dataset, capsys):
    """`study … --json`: the last line is one object with a `cells` list holding the required keys."""
    from promptlab.cli import main

    tgt, same, cross = specs()
    code = main(["study", "--dataset", dataset.name, "--targets", tgt.model, "--proposers", f"{same.model},{cross.model}",
                 "--seeds", "2", "--rounds", "1", "--budget", "400", "--minibatch", "8", "--db", str(store.path), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out.strip().splitlines()[-1])
    assert len(doc["cells"]) == 2
    for cell in doc["cells"]:
        assert set(cell) >= {"target", "proposer", "relation", "seeds", "gain_mean", "ci_low", "ci_high", "p_value", "n_test"}
        assert cell["seeds"] == 2
    assert len(doc["pairs"]) == 1 and doc["pairs"][0]["seeds"] == 2
    assert "head to head" in captured.err
    assert "study " in captured.err and "[4/4]" in captured.err
    n_test = len(dataset.split("test"))
    assert f"With {n_test} test examples and 2 seeds, a gain over the baseline under ~" in captured.err  # before it ran
    assert captured.err.index("will not be told from noise") < captured.err.index("[1/4]")
    assert main(["study", "--show", doc["study_id"], "--db", str(store.path), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["cells"] == doc["cells"]
    assert main(["study", "--show", "study-nope", "--db", str(store.path)]) != 0
    assert "no study 'study-nope'" in capsys.readouterr().err


def test_study_in_macro_f1_has_gains_but_no_p_values(store, dataset, capsys):
    """macro-F1 is not a per-example mean: the CI decides, the table shows no p-value (and does not fail)."""
    from promptlab.cli import main

    tgt, same, cross = specs()
    code = main(["study", "--dataset", dataset.name, "--targets", tgt.model, "--proposers", f"{same.model},{cross.model}",
                 "--seeds", "1", "--rounds", "1", "--metric", "macro_f1", "--minibatch", "8", "--db", str(store.path),
                 "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out.strip().splitlines()[-1])
    good_cell = next(c for c in doc["cells"] if c["proposer"] == same.label)
    assert good_cell["gain_mean"] > 0.3 and good_cell["p_value"] is None
    assert doc["pairs"][0]["p_value"] is None and doc["pairs"][0]["p_adj"] is None  # null, not NaN
    assert "NaN" not in captured.out.strip().splitlines()[-1]
    assert "fewer than 3 seeds" in doc["readings"][tgt.label]


def test_a_request_by_names_is_the_same_study_as_the_resolved_one(store, dataset):
    """The CLI and the Runs page ask by name (StudyRequest); resolved, it is the very grid create_study stores."""
    tgt, same, cross = specs()
    sid, reused = S.create_study(store, dataset, [tgt], [same, cross], seeds=2, mixes=[[same.label, cross.label]],
                                 rounds=2, budget=None, minibatch_size=8)
    for spec in (tgt, same, cross):
        store.save_model(spec.label, spec.to_record())  # configured by name, as `models add` does
    req = S.StudyRequest(dataset.name, (tgt.label,), (same.label, cross.label), 2, mixes=((same.label, cross.label),),
                         budget=None, rounds=2, settings={"minibatch_size": 8})
    again, reused_again, ds = S.request_study(store, req)
    assert (again, reused_again, ds.id) == (sid, True, dataset.id) and not reused
    with pytest.raises(PromptlabError, match="unknown model 'nobody'"):
        S.request_study(store, S.StudyRequest(dataset.name, ("nobody",), (same.model,)))
