"""kill -9 in the middle of a run, started from the CLI or by the dashboard's worker, then `runs resume ID`.

The models are deterministic and served over real HTTP by tests/openai_stub.py, so the run's every call
crosses a process boundary and the outcome can be compared with an uninterrupted run of the same seed:
the leaderboards must be equal, and no call may be lost or made twice.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT, sentiment_dataset
from openai_stub import Stub
from promptlab import planning, runs
from promptlab.store import Store

COLS = ["id", "round", "proposer", "status", "minibatch_score", "val_score", "test_score", "n_scored", "confirm_score", "text"]


def target_reply(body: dict) -> str:
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    text = body["messages"][-1]["content"]
    truth = "positive" if "great" in text else ("negative" if "awful" in text else "neutral")
    return truth if "MAGIC" in system else "positive"


def proposer_reply(body: dict) -> str:
    k = int(hashlib.sha256(body["messages"][-1]["content"].encode()).hexdigest(), 16) % 1000
    ideas = ["Use MAGIC, version {k}.", "Be plain, attempt {k}.", "Label carefully, take {k}."]
    return " ".join(f"<prompt>{ideas[(k + i) % 3].format(k=k % 7)}</prompt>" for i in range(2))


@pytest.fixture
def servers():
    with Stub(target_reply, delay_s=0.03) as target, Stub(proposer_reply, delay_s=0.03) as proposer:
        yield target, proposer


def setup_db(path, tmp_path, servers) -> str:
    store = Store(path)
    ds = sentiment_dataset(store, tmp_path, neutral=20)
    target, proposer = servers
    from promptlab.models import make_spec

    store.save_model("stub-target", make_spec("openai/stub-target", api_base=target.base, name="stub-target").to_record())
    store.save_model("stub-prop", make_spec("openai/stub-prop", api_base=proposer.base, name="stub-prop").to_record())
    store.close()
    return ds.name


def kill_when(store_path, child, calls: int, timeout: float = 120) -> str:
    """SIGKILL `child` once its run has committed `calls` calls; returns the run id."""
    store = Store(store_path)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            assert child.poll() is None, "the run ended before it could be killed"
            rows = store._all("SELECT r.id, count(c.id) FROM runs r LEFT JOIN llm_calls c ON c.run_id = r.id"
                              " WHERE r.status = 'running' GROUP BY r.id")
            if rows and rows[0][1] >= calls:
                child.send_signal(signal.SIGKILL)
                child.wait()
                return rows[0][0]
            time.sleep(0.05)
    finally:
        store.close()
    child.kill()
    pytest.fail("the run never reached the call count")


def reference(tmp_path, servers, config: dict):
    """The same configuration, uninterrupted, in its own store."""
    path = tmp_path / "reference.duckdb"
    sub = tmp_path / "ref"
    sub.mkdir()
    setup_db(path, sub, servers)
    store = Store(path)
    run_id = runs.create_run(store, planning.RunConfig.from_record(config))
    summary = runs.execute(store, run_id)
    return store, run_id, summary


def check_resumed_equals_reference(db, run_id, tmp_path, servers) -> dict:
    store = Store(db)
    rec = store.run_row(run_id)
    ref_store, ref_id, ref = reference(tmp_path, servers, rec["config"])
    a = store.candidates(run_id)[COLS].fillna(-1).to_dict("records")
    b = ref_store.candidates(ref_id)[COLS].fillna(-1).to_dict("records")
    out = {"lost": ref_store.call_stats()["calls"] - store.call_stats(run_id)["calls"],
           "repeated": store.repeated_calls(), "status": rec["status"]}
    print(f"\nkilled run {run_id}: {store.call_stats(run_id)['calls']} calls in all, lost {out['lost']}, "
          f"repeated {out['repeated']}, leaderboard equal to the uninterrupted run: {a == b}")
    assert a == b
    assert out["lost"] == 0 and out["repeated"] == 0
    assert store.step_kinds(run_id) == ref_store.step_kinds(ref_id)
    ref_store.close()
    store.close()
    return out


def cli(db, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "promptlab", *args, "--db", str(db)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_kill_9_a_cli_run_then_resume_it(tmp_path, servers):
    db = tmp_path / "cli.duckdb"
    name = setup_db(db, tmp_path, servers)
    child = subprocess.Popen([sys.executable, "-m", "promptlab", "optimize", "--dataset", name, "--target", "stub-target",
                              "--proposers", "stub-prop", "--rounds", "3", "--seed", "4", "--minibatch", "8",
                              "--strategy", "arena", "--db", str(db)], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    run_id = kill_when(db, child, calls=60)
    print(f"\nCLI run killed with SIGKILL after {Store(db).call_stats(run_id)['calls']} committed calls")
    # at start-up of the next command, the run left 'running' by the dead process is marked interrupted
    listing = cli(db, "runs", "list", "--json")
    status = {r["id"]: r["status"] for r in json.loads(listing.stdout)}
    assert status[run_id] == "interrupted"
    made_before = Store(db).call_stats(run_id)["calls"]
    assert made_before >= 60
    resumed = json.loads(cli(db, "runs", "resume", run_id, "--json").stdout)
    assert resumed["status"] == "finished" and resumed["repeated_calls"] == 0
    out = check_resumed_equals_reference(db, run_id, tmp_path, servers)
    assert out == {"lost": 0, "repeated": 0, "status": "finished"}


def test_kill_9_an_auto_run_in_the_middle_of_a_race_then_resume_it(tmp_path, servers):
    """The default strategy, killed while its candidates race (the demo stage scores them rung by rung), resumes
    to the same result: the same leaderboard, confirmation and winner, no call lost or made twice."""
    db = tmp_path / "auto.duckdb"
    name = setup_db(db, tmp_path, servers)
    child = subprocess.Popen([sys.executable, "-m", "promptlab", "optimize", "--dataset", name, "--target", "stub-target",
                              "--proposers", "stub-prop", "--rounds", "2", "--seed", "4", "--minibatch", "4",
                              "--budget", "500", "--db", str(db)], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    run_id = kill_when(db, child, calls=100)  # of about 210 in all (target, proposer and test calls)
    store = Store(db)
    kinds = store.step_kinds(run_id)
    store.close()
    assert "stage_started" in kinds and "winner_chosen" not in kinds  # killed mid-search, before the confirmation
    resumed = json.loads(cli(db, "runs", "resume", run_id, "--json").stdout)
    assert resumed["status"] == "finished" and resumed["repeated_calls"] == 0 and resumed["result"] is not None
    out = check_resumed_equals_reference(db, run_id, tmp_path, servers)
    assert out == {"lost": 0, "repeated": 0, "status": "finished"}
    store = Store(db)
    assert [s["kind"] for s in store.steps(run_id)].count("winner_chosen") == 1
    store.close()


DASHBOARD_CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file({page!r}, default_timeout=60).run()
    at.selectbox(key="runs.target").set_value("stub-target")
    at.multiselect(key="runs.proposers").set_value(["stub-prop"])
    at.number_input(key="runs.rounds").set_value(3)
    at.number_input(key="runs.seed").set_value(4)
    at.number_input(key="runs.minibatch").set_value(8)
    at.run()
    at.button(key="runs.start").click().run()
    assert not at.exception, at.exception
    print("started", flush=True)
    time.sleep(600)  # the run goes on in the page's worker thread until this process is killed
""")


def test_kill_9_the_dashboard_worker_then_resume_it(tmp_path, servers):
    db = tmp_path / "ui.duckdb"
    setup_db(db, tmp_path, servers)
    script = DASHBOARD_CHILD.format(root=str(ROOT), page=str(ROOT / "pages" / "3_Runs.py"))
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PROMPTLAB_DB": str(db)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_id = kill_when(db, child, calls=60)
    print(f"\ndashboard worker killed with SIGKILL after {Store(db).call_stats(run_id)['calls']} committed calls")
    assert Store(db).run_row(run_id)["config"]["seed"] == 4  # it is the run the page started
    resumed = json.loads(cli(db, "runs", "resume", run_id, "--json").stdout)
    assert resumed["status"] == "finished"
    out = check_resumed_equals_reference(db, run_id, tmp_path, servers)
    assert out == {"lost": 0, "repeated": 0, "status": "finished"}


def test_kill_9_a_semi_automatic_run_then_resume_with_its_decisions(tmp_path, servers):
    """A run that pauses each round for the analyst: its round-1 decisions come from a file, the reviewing
    process is SIGKILLed in round 2, and a second `review` resumes it. The decisions already stored are
    replayed, none is lost or applied twice, and the result equals an uninterrupted run given the same
    decisions."""
    from promptlab import review

    db = tmp_path / "semi.duckdb"
    name = setup_db(db, tmp_path, servers)
    cli(db, "optimize", "--dataset", name, "--target", "stub-target", "--proposers", "stub-prop", "--rounds", "3",
        "--seed", "4", "--minibatch", "8", "--review", "--strategy", "arena")
    store = Store(db)
    run_id = store.list_runs()["id"].iloc[0]
    pause = review.paused_at(store, run_id)
    assert pause.round == 1
    paused_calls = store.call_stats(run_id)["calls"]
    store.close()
    decisions = tmp_path / "d.jsonl"
    decisions.write_text("\n".join(json.dumps(d) for d in [
        {"round": 1, "action": "discard", "candidate": pause.candidate_ids[-1], "note": "not this one"},
        {"round": 1, "action": "add", "text": "Use MAGIC, said the analyst."},
        {"round": 1, "action": "continue"},
        {"round": 2, "action": "continue"},
        {"round": 3, "action": "continue"},
    ]), encoding="utf-8")
    child = subprocess.Popen([sys.executable, "-m", "promptlab", "review", run_id, "--decisions", str(decisions),
                              "--db", str(db)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(db, child, calls=paused_calls + 40)
    store = Store(db)
    before = store.decisions(run_id)
    store.close()
    assert [d["action"] for d in before if d["round"] == 1] == ["discard", "add", "continue"]
    cli(db, "review", run_id, "--decisions", str(decisions))
    store = Store(db)
    assert store.run_row(run_id)["status"] == "finished"
    after = store.decisions(run_id)
    assert [(d["round"], d["action"]) for d in after] == [(1, "discard"), (1, "add"), (1, "continue"), (2, "continue"),
                                                          (3, "continue")]  # none lost, none applied twice
    # the same decisions given to an uninterrupted run of the same configuration
    ref_path = tmp_path / "reference.duckdb"
    sub = tmp_path / "ref"
    sub.mkdir()
    setup_db(ref_path, sub, servers)
    ref = Store(ref_path)
    ref_id = runs.create_run(ref, planning.RunConfig.from_record(store.run_row(run_id)["config"]))
    while runs.execute(ref, ref_id)["status"] == "paused":
        r = review.paused_at(ref, ref_id).round
        for d in (d for d in after if d["round"] == r):
            ref.add_decision(ref_id, r, d["action"], d["candidate_id"], d["text"], d["who"], d["note"], d["detail"])
    a = store.candidates(run_id)[COLS].fillna(-1).to_dict("records")
    b = ref.candidates(ref_id)[COLS].fillna(-1).to_dict("records")
    assert a == b and store.step_kinds(run_id) == ref.step_kinds(ref_id)
    assert "human" in {c["proposer"] for c in a}
    assert ref.call_stats()["calls"] - store.call_stats(run_id)["calls"] == 0 and store.repeated_calls() == 0
