"""The prompts x models matrix: two scripted targets that each read only their own magic word, one run per target;
each run's prompt is the best for its own model and does not transfer to the other."""
import json

import pytest

import fakes
from conftest import sentiment_dataset
from promptlab import planning, runs
from promptlab.cli import main
from promptlab.errors import PromptlabError
from promptlab.jobs import MatrixRequest, matrix_lines, score_matrix
from promptlab.progress import Progress
from promptlab.models import make_spec


def reads(word):
    def reply(messages, params):
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        text = messages[-1]["content"]
        if word not in system:
            return "neutral"
        return "positive" if "great" in text else ("negative" if "awful" in text else "neutral")
    return reply


def proposer(messages, params):
    return "<prompt>WORD-A: label the sentiment.</prompt><prompt>WORD-B: label the sentiment.</prompt>"


@pytest.fixture
def two_runs(store, tmp_path):
    ds = sentiment_dataset(store, tmp_path, neutral=10)
    prop = make_spec(fakes.script("m-prop", proposer))
    models, run_ids = [], []
    for word in ("WORD-A", "WORD-B"):
        spec = make_spec(fakes.script(f"m-{word}", reads(word)), name=f"target-{word[-1]}")
        store.save_model(spec.name, spec.to_record())
        cfg = planning.make_config(ds, spec, [prop], strategy="arena", rounds=1, seed=0, confirm=0.0, minibatch_size=8)
        run_id = runs.create_run(store, cfg)
        runs.execute(store, run_id)
        models.append(spec)
        run_ids.append(run_id)
    return ds, models, run_ids


def test_each_models_own_prompt_is_its_best_and_does_not_transfer(store, two_runs):
    ds, models, run_ids = two_runs
    progress = Progress()
    result = score_matrix(store, MatrixRequest(tuple(run_ids), tuple(models)), progress)
    cells = result.cells
    assert len(cells) == 4 and progress.note.startswith("cell 4 of 4")
    assert progress.done == progress.total  # every new call the cells needed was made
    assert set(cells["n"]) == {len(ds.split("test"))}  # the same test examples in every cell
    best = cells[cells["best_for_model"]]
    assert sorted(zip(best["model"], best["own_model"])) == [("target-A", "target-A"), ("target-B", "target-B")]
    for r in result.transfer.itertuples():
        assert r.own_score > r.others_mean + 0.3  # it does not transfer
        assert r.own_score == pytest.approx(cells[(cells["prompt"] == r.prompt) & (cells["model"] == r.own_model)]
                                            ["score"].iloc[0])
    lines = matrix_lines(result)
    assert any(line.startswith("best for target-A: " + run_ids[0]) for line in lines)
    # the run's own prompt on its own model and data is its test scoring: from the cache
    again = Progress()
    score_matrix(store, MatrixRequest(tuple(run_ids), tuple(models)), again)
    assert again.done == again.total == 0  # no new calls


def test_the_matrix_command(store, two_runs, capsys):
    ds, models, run_ids = two_runs
    code = main(["matrix", "--runs", ",".join(run_ids), "--models", "target-A,target-B", "--db", str(store.path),
                 "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(doc["cells"]) == 4 and doc["split"] == "test" and len(doc["transfer"]) == 2
    code = main(["matrix", "--runs", run_ids[0], "--models", "target-A", "--top", "0", "--db", str(store.path)])
    assert code != 0 and "--top must be at least 1" in capsys.readouterr().err


def test_nothing_to_score_is_refused(store):
    with pytest.raises(PromptlabError, match="at least one run"):
        score_matrix(store, MatrixRequest((), ()))
