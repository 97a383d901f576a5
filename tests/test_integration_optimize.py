"""Integration: `optimize` end to end with the real local zoo models on a tiny budget, through the CLI."""
import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from conftest import DEMO, ROOT


def test_optimize_with_real_local_models_then_show_and_list(tmp_path):
    demo = pd.read_csv(DEMO)
    small = pd.concat([demo[demo["label"] == lab].head(10) for lab in ("billing", "technical", "account")])
    path = tmp_path / "tickets_small.csv"
    small.sample(frac=1, random_state=0).to_csv(path, index=False)
    env = {**os.environ, "PROMPTLAB_DB": str(tmp_path / "opt.duckdb")}

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "promptlab", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    proc = cli("optimize", "--dataset", str(path), "--target", "local/qwen2.5-coder-0.5b",
               "--proposers", "local/qwen2.5-coder-0.5b,local/smollm2-135m", "--arena", "0", "--rounds", "1",
               "--candidates", "1", "--minibatch", "6", "--budget", "80", "--test-top", "1", "--strategy", "arena",
               "--confirm", "0", "--json")  # 30 rows: too few to hold val back; the result is the best val
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("run_id", "baseline_prompt", "baseline_val", "baseline_test", "best_prompt", "best_val", "best_test",
                "target_calls", "proposer_calls", "cached_calls", "rounds", "proposers"):
        assert key in s, key
    assert "projection:" in proc.stderr
    assert s["status"] == "finished" and s["rounds"] == 1 and s["proposer_calls"] == 2
    assert s["best_val"] >= s["baseline_val"] and s["baseline_test"] is not None
    assert {p["model"] for p in s["proposers"]} == {"local/qwen2.5-coder-0.5b", "local/smollm2-135m"}
    assert {p["family"] for p in s["proposers"]} == {"qwen", "smollm"}
    for p in s["proposers"]:
        assert set(p) >= {"model", "family", "asked", "written", "usable", "best_val", "wins"}

    shown = json.loads(cli("runs", "show", s["run_id"], "--json").stdout.strip().splitlines()[-1])
    assert shown["best_val"] == s["best_val"] and shown["leaderboard"][0]["val_score"] == s["best_val"]
    assert s["run_id"] in cli("runs", "list").stdout

    again = json.loads(cli("runs", "resume", s["run_id"], "--json").stdout.strip().splitlines()[-1])
    assert again["target_calls"] == 0 and again["proposer_calls"] == 0  # a finished run replays from the cache
    assert again["best_prompt"] == s["best_prompt"]


def _tiny_cli(tmp_path):
    demo = pd.read_csv(DEMO)
    small = pd.concat([demo[demo["label"] == lab].head(9) for lab in ("billing", "technical", "account")])
    path = tmp_path / "tickets_tiny.csv"
    small.sample(frac=1, random_state=1).to_csv(path, index=False)
    env = {**os.environ, "PROMPTLAB_DB": str(tmp_path / "strat.duckdb")}

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "promptlab", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr

    return path, cli


@pytest.mark.timeout(1200)  # real models on 2 cores: a few minutes, more on a busy machine
def test_arena_then_fewshot_chain_with_real_local_models(tmp_path):
    path, cli = _tiny_cli(tmp_path)
    chain, log = cli("optimize", "--dataset", str(path), "--target", "local/qwen2.5-coder-0.5b",
                     "--proposers", "local/qwen2.5-coder-0.5b", "--strategy", "arena,fewshot", "--rounds", "1",
                     "--candidates", "1", "--minibatch", "4", "--budget", "120", "--test-top", "1",
                     "--demo-methods", "stratified,similar", "--json")
    assert chain["status"] == "finished" and chain["best_val"] >= chain["baseline_val"]
    assert "stage 1: arena" in log and "stage 2: fewshot" in log
    assert any(p["model"].startswith("fewshot/") for p in chain["proposers"])


@pytest.mark.timeout(1200)
def test_gradient_with_real_local_models(tmp_path):
    path, cli = _tiny_cli(tmp_path)
    grad, log = cli("optimize", "--dataset", str(path), "--target", "local/qwen2.5-coder-0.5b",
                    "--proposers", "local/qwen2.5-coder-0.5b", "--strategy", "gradient", "--critic",
                    "local/smollm2-135m", "--editor", "local/qwen2.5-coder-0.5b", "--rounds", "1",
                    "--candidates", "1", "--minibatch", "4", "--budget", "80", "--test-top", "1", "--json")
    assert grad["status"] == "finished" and grad["rounds"] == 1
    assert grad["proposer_calls"] in (1, 2)  # the critic, and the editor when the critic gave feedback
    assert " on #1 (" in log  # the critique of the baseline, printed as it happened
    assert grad["best_val"] >= grad["baseline_val"] and grad["baseline_test"] is not None


@pytest.mark.timeout(1200)
def test_auto_with_real_local_models(tmp_path):
    """The default strategy end to end on the real zoo: its stages in order, the result chosen on held-back
    val and said in one sentence, test scored at the end."""
    path, cli = _tiny_cli(tmp_path)
    s, log = cli("optimize", "--dataset", str(path), "--target", "local/qwen2.5-coder-0.5b",
                 "--proposers", "local/qwen2.5-coder-0.5b", "--critic", "local/smollm2-135m", "--rounds", "1",
                 "--candidates", "1", "--minibatch", "4", "--budget", "150", "--test-top", "1", "--json")
    assert s["status"] == "finished" and s["baseline_test"] is not None and s["best_test"] is not None
    assert "stage 1: instructions (arena)" in log and "stage 2: demos (fewshot)" in log and "held back to confirm" in log
    held = int(re.search(r"(\d+) val examples are held back", log).group(1))
    assert abs(held - 0.5 * (s["n_val"] + held)) <= 1  # half of val held back, no search step reads it
    r = s["result"]  # n_confirm 0: nothing beat the baseline; else the held-back val and the unseen train rows
    assert r["reading"] in log and r["n_confirm"] in (0, held + (r.get("n_from_train") or 0))
    kept = [x["candidate_id"] for x in s["simplified"] if x["accepted"]]
    assert s["best_id"] == (kept[-1] if kept else r["winner_id"])  # the decided result, or its simplest variant
