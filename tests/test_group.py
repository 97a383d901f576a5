"""The best prompt for each model in one job (promptlab.group): one search per target, stored as a group, read
back as one row per model and the prompts x models matrix; killed in the middle, it resumes without a repeated
call (the CLI over real HTTP to tests/openai_stub.py servers)."""
import json
import signal
import subprocess
import sys
import time

import pytest

import fakes
from conftest import ROOT, sentiment_dataset
from openai_stub import Stub
from promptlab import group as G
from promptlab import planning
from promptlab.errors import PromptlabError
from promptlab.models import make_spec
from promptlab.store import Store
from test_kill_resume import cli, proposer_reply, target_reply


def magic_target(messages, params):
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    text = messages[-1]["content"]
    truth = "positive" if "great" in text else ("negative" if "awful" in text else "neutral")
    return truth if "MAGIC" in system else "positive"


def stubborn_target(messages, params):
    return "positive"


def prop(messages, params):
    return "<prompt>Use MAGIC: label it.</prompt><prompt>Label it with care.</prompt>"


@pytest.fixture
def models(store):
    for name, fn in (("grp-magic", magic_target), ("grp-stubborn", stubborn_target), ("grp-prop", prop)):
        store.save_model(name, make_spec(fakes.script(name, fn), name=name).to_record())


def test_one_search_per_model_read_back_as_one_row_each_and_a_matrix(store, tmp_path, models):
    ds = sentiment_dataset(store, tmp_path, neutral=30)
    request = planning.RunRequest(ds.name, "", ("grp-prop",), strategy="arena", rounds=2, budget=300)
    plans = G.plan_group(store, request, ["grp-magic", "grp-stubborn"])
    group_id, reused = G.create_group(store, plans)
    assert not reused and G.is_group(store, group_id)
    # every member is the run `optimize --target T` plans, the target aside
    configs = [store.run_row(r)["config"] for r in G.members(store, group_id)["run_id"]]
    assert [c["target"]["name"] for c in configs] == ["grp-magic", "grp-stubborn"]
    assert all({k: v for k, v in c.items() if k != "target"} == {k: v for k, v in configs[0].items() if k != "target"}
               for c in configs)
    frame = G.execute_group(store, group_id)
    assert frame["model"].tolist() == ["grp-magic", "grp-stubborn"] and (frame["status"] == "finished").all()
    magic = frame.iloc[0]
    assert magic["test"] == 1.0 and "MAGIC" in magic["prompt"] and magic["gain"] > 0 and magic["gain_ci_low"] > 0
    assert magic["tokens_in"] > 0 and magic["latency_s"] is not None and magic["n_test"] > 0
    mat = G.matrix(store, group_id)
    cells = mat.cells
    assert len(cells) == 4 and cells["diagonal"].sum() == 2
    off = cells[(cells["own_model"] == "grp-magic") & (cells["model"] == "grp-stubborn")].iloc[0]
    assert off["score"] < 1.0  # the prompt found for one model does not transfer to the other
    report = G.markdown_report(store, group_id, mat)
    assert "| grp-magic | 1.000 [" in report and "best for grp-magic" in report
    lines = G.group_lines(store, group_id)
    assert lines[0].startswith("grp-magic: test 1.000") and "tokens in" in lines[0]
    # the same job asked for again is the same group: nothing runs twice
    calls = store.call_stats()["calls"]
    again, reused = G.create_group(store, G.plan_group(store, request, ["grp-magic", "grp-stubborn"]))
    assert (again, reused) == (group_id, True)
    G.execute_group(store, again)
    assert store.call_stats()["calls"] == calls
    assert group_id in store.list_studies(groups=True)["id"].tolist()
    assert group_id not in store.list_studies()["id"].tolist()  # not a study: the study views never see it


def test_a_group_needs_two_targets_and_names_the_one_that_is_wrong(store, tmp_path, models):
    ds = sentiment_dataset(store, tmp_path)
    request = planning.RunRequest(ds.name, "", ("grp-prop",), strategy="arena")
    with pytest.raises(PromptlabError, match="at least two target models"):
        G.plan_group(store, request, ["grp-magic"])
    with pytest.raises(PromptlabError, match="target no-such-model"):
        G.plan_group(store, request, ["grp-magic", "no-such-model"])


def test_kill_9_a_multi_target_job_in_its_second_search_then_resume_it(tmp_path):
    with Stub(target_reply, delay_s=0.03) as target, Stub(proposer_reply, delay_s=0.03) as proposer:
        db = tmp_path / "group.duckdb"
        store = Store(db)
        ds = sentiment_dataset(store, tmp_path, neutral=20)
        for name in ("stub-a", "stub-b"):  # two models behind one server: their calls are keyed apart
            store.save_model(name, make_spec(f"openai/{name}", api_base=target.base, name=name).to_record())
        store.save_model("stub-prop", make_spec("openai/stub-prop", api_base=proposer.base, name="stub-prop").to_record())
        store.close()
        args = ["optimize", "--dataset", ds.name, "--target", "stub-a,stub-b", "--proposers", "stub-prop",
                "--strategy", "arena", "--rounds", "2", "--minibatch", "4", "--budget", "300"]
        child = subprocess.Popen([sys.executable, "-m", "promptlab", *args, "--db", str(db)], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        store = Store(db)
        deadline, group_id = time.time() + 180, None
        try:
            while time.time() < deadline:
                assert child.poll() is None, "the job ended before it could be killed"
                rows = store._all("SELECT s.study_id, s.target, r.status, (SELECT count(*) FROM llm_calls c"
                                  " WHERE c.run_id = r.id) FROM study_runs s JOIN runs r ON r.id = s.run_id")
                second = [r for r in rows if r[1] == "stub-b"]
                if second and second[0][2] == "running" and second[0][3] >= 40:
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                    group_id = second[0][0]
                    break
                time.sleep(0.05)
        finally:
            if child.poll() is None:
                child.kill()
            store.close()
        assert group_id, "the second search never got under way"
        before = Store(db).call_stats()["calls"]
        out = json.loads(cli(db, "runs", "resume", group_id, "--json").stdout)
        assert [m["status"] for m in out["models"]] == ["finished", "finished"]
        assert out["matrix"] and sum(c["diagonal"] for c in out["matrix"]) == 2
        store = Store(db)
        assert store.repeated_calls() == 0 and store.call_stats()["calls"] > before
        first = G.members(store, group_id).iloc[0]
        assert store.run_row(first["run_id"])["status"] == "finished"
        # asked for again, the job is found and nothing is called
        calls = store.call_stats()["calls"]
        store.close()
        shown = cli(db, *args)
        assert "(stored: resuming it)" in shown.stdout and Store(db).call_stats()["calls"] == calls
        listing = cli(db, "runs", "list").stdout
        assert group_id in listing and "2/2 searches finished" in listing
