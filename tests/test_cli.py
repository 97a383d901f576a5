"""The CLI: commands, --json last lines, escapes, and one clear line (no traceback) on errors."""
import json
import os
import subprocess
import sys

import pytest

import fakes
from promptlab.cli import main
from promptlab.cli.common import unescape

from conftest import ROOT


def run_cli(*args, db):
    """Run `python -m promptlab` as a user would; returns (code, stdout, stderr)."""
    env = {**os.environ, "PROMPTLAB_DB": str(db)}
    proc = subprocess.run([sys.executable, "-m", "promptlab", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_escapes_are_honoured_and_cyrillic_untouched():
    assert unescape(r"Line one\nLine two\tTabbed \\n Привет") == "Line one\nLine two\tTabbed \\n Привет"


def test_import_list_show_and_reuse(tmp_path, tiny_csv):
    db = tmp_path / "c.duckdb"
    code, out, err = run_cli("datasets", "import", str(tiny_csv), "--json", db=db)
    assert code == 0, err
    info = json.loads(out.strip().splitlines()[-1])
    assert info["n_rows"] == 28 and info["reused"] is False and sum(info["splits"].values()) == 28
    code, out, _ = run_cli("datasets", "import", str(tiny_csv), "--json", db=db)
    assert json.loads(out.strip().splitlines()[-1])["reused"] is True
    code, out, _ = run_cli("datasets", "list", db=db)
    assert code == 0 and "tiny" in out


@pytest.mark.parametrize("content,needle", [
    ("", "the file is empty"),
    ("text,label\na,x\nb,x\nc,x\n", "same label"),
])
def test_bad_file_exits_nonzero_with_one_clear_line(tmp_path, content, needle):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    code, out, err = run_cli("datasets", "import", str(bad), db=tmp_path / "c.duckdb")
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in err


def test_unknown_dataset_and_model_and_metric_errors(tmp_path, tiny_csv):
    db = tmp_path / "c.duckdb"
    code, _, err = run_cli("eval", "--dataset", "nope", "--model", "local/smollm2-135m", "--prompt", "x", db=db)
    assert code == 1 and "no dataset named 'nope'" in err and "Traceback" not in err
    code, _, err = run_cli("eval", "--dataset", str(tiny_csv), "--model", "local/nope", "--prompt", "x", db=db)
    assert code == 1 and "unknown local model 'nope'" in err
    code, _, err = run_cli("eval", "--dataset", str(tiny_csv), "--model", "local/smollm2-135m", "--prompt", "x", "--metric", "recall:happy", db=db)
    assert code == 1 and "unknown label 'happy'" in err and "positive" in err


def test_debug_shows_the_traceback(tmp_path):
    code, _, err = run_cli("eval", "--dataset", "nope", "--model", "local/smollm2-135m", "--prompt", "x", "--debug", db=tmp_path / "c.duckdb")
    assert code == 1 and "Traceback" in err


def test_eval_json_last_line_and_cache(tmp_path, tiny_csv, capsys):
    name = fakes.script("cli-kw", lambda m, p: "positive" if "great" in m[-1]["content"] else "negative")
    args = ["eval", "--dataset", str(tiny_csv), "--model", name, "--prompt", "Sentiment?\\nLabels: {labels}",
            "--split", "all", "--metric", "recall:negative", "--db", str(tmp_path / "e.duckdb"), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("score", "metric", "n", "invalid_rate", "calls", "cached", "eval_wall_s", "examples_per_s"):
        assert key in first
    assert first["metric"] == "recall:negative" and first["score"] == 1.0 and first["n"] == 28 and first["calls"] == 28
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["calls"] == 0 and second["cached"] == 28 and second["score"] == first["score"]


def test_eval_human_output_has_every_figure(tmp_path, tiny_csv, capsys):
    name = fakes.script("cli-kw2", lambda m, p: "positive")
    assert main(["eval", "--dataset", str(tiny_csv), "--model", name, "--prompt", "x {input}", "--limit", "10",
                 "--db", str(tmp_path / "h.duckdb")]) == 0
    out = capsys.readouterr().out
    for needle in ("score", "95% CI", "confusion", "(invalid)", "invalid", "calls", "cached", "tokens", "examples/s"):
        assert needle in out, needle


def test_models_add_list_remove_never_store_a_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MY_PROVIDER_KEY", "sk-live-should-never-be-stored")
    db = str(tmp_path / "m.duckdb")
    assert main(["models", "add", "gemma-big", "--model", "openrouter/google/gemma-2-27b-it", "--api-key-env",
                 "MY_PROVIDER_KEY", "--param", "temperature=0.7", "--db", db]) == 0
    assert main(["models", "list", "--json", "--db", db]) == 0
    listing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert listing["configured"][0]["family"] == "gemma" and listing["configured"][0]["size_b"] == 27.0
    assert {z["model"] for z in listing["zoo"]} == {"local/smollm2-135m", "local/qwen2.5-coder-0.5b", "local/qwen2.5-coder-1.5b"}
    assert b"sk-live-should-never-be-stored" not in (tmp_path / "m.duckdb").read_bytes()
    assert main(["models", "remove", "gemma-big", "--db", db]) == 0


def test_runs_list_shows_a_run_that_has_no_summary_yet(store, tiny_csv, capsys):
    """A created or running run has no summary (NULL); `runs list` must list it, not fail on it."""
    from promptlab import planning, runs
    from promptlab.data import import_dataset
    from promptlab.models import make_spec

    ds = import_dataset(store, tiny_csv)[0]
    tgt = make_spec(fakes.script("cli-list-t", lambda m, p: "positive"))
    run_id = runs.create_run(store, planning.make_config(ds, tgt, [tgt], rounds=1))
    done = runs.create_run(store, planning.make_config(ds, tgt, [tgt], rounds=1, seed=1))
    store.finish_run(done, "finished", {"best_val": 0.5, "best_test": 0.25})  # a column of summaries and a NULL
    path = store.path
    store.close()
    assert main(["runs", "list", "--db", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "created" in next(x for x in out if x.startswith(run_id))
    assert "best val 0.500 test 0.250" in next(x for x in out if x.startswith(done))


def test_runs_resume_refuses_a_run_another_process_is_executing(store, tiny_csv, capsys):
    """A run 'running' in a live process is not resumable (runs.RESUMABLE): resuming it here would execute it twice."""
    from promptlab import planning, runs
    from promptlab.data import import_dataset
    from promptlab.models import make_spec

    ds = import_dataset(store, tiny_csv)[0]
    tgt = make_spec(fakes.script("cli-resume-t", lambda m, p: "positive"))
    run_id = runs.create_run(store, planning.make_config(ds, tgt, [tgt], rounds=1))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # alive while we resume
    try:
        with store.transaction() as con:
            con.execute("UPDATE runs SET status = 'running', pid = ?, host = ? WHERE id = ?",
                        [other.pid, os.uname().nodename, run_id])
        path = store.path
        store.close()
        assert main(["runs", "resume", run_id, "--db", str(path)]) == 1
    finally:
        other.kill()
        other.wait()
    err = capsys.readouterr().err
    assert f"run {run_id} is running in another process (pid {other.pid}" in err and "Traceback" not in err

def test_progress_line_says_over_budget_instead_of_an_empty_val_score():
    from promptlab.cli.runs import step_line
    from promptlab.optimize.base import CandidateScored

    line = step_line(CandidateScored(candidate_id=3, round=1, minibatch_score=0.625, val_score=None, val_ci=None,
                                     n_val=0, status="over budget"))
    assert line == "  #3: minibatch 0.625, over budget (the target-call budget ran out before its val score)"


def test_import_with_a_separate_test_file_keeps_it_as_the_test_split(tmp_path):
    db = tmp_path / "c.duckdb"
    (tmp_path / "main.csv").write_text("text,label\n" + "".join(f"good {i},pos\nbad {i},neg\n" for i in range(10)))
    (tmp_path / "held.csv").write_text("text,label\n" + "".join(f"fine {i},pos\npoor {i},neg\n" for i in range(4)))
    code, out, err = run_cli("datasets", "import", str(tmp_path / "main.csv"), "--test-file", str(tmp_path / "held.csv"),
                             "--json", db=db)
    assert code == 0, err
    info = json.loads(out.strip().splitlines()[-1])
    assert info["own_split"] and info["splits"]["test"] == 8 and info["splits"]["train"] + info["splits"]["val"] == 20
    code, out, err = run_cli("datasets", "show", "main", db=db)
    assert "test 8 (the data's own" in out


def test_why_a_search_ended_reads_in_words():
    from promptlab import report

    assert report.stop_reason({"reason": "rounds"}) == "every round ran"
    assert report.stop_reason({"reason": "budget"}) == "the budget was spent"
    assert report.stop_reason({"reason": "something new"}) == "something new"  # an unknown key shows as it is
    assert report.stop_reason({"reason": None}) is None and report.stop_reason({}) is None


def test_the_gain_on_test_is_the_result_minus_the_baseline_where_both_were_scored():
    from promptlab import results

    assert results.gain_on_test({"best_test": 0.75, "baseline_test": 0.5}) == 0.25
    assert results.gain_on_test({"best_test": 0.5, "baseline_test": 0.5}) == 0.0
    assert results.gain_on_test({"best_test": None, "baseline_test": 0.5}) is None  # not scored on test (yet)
    assert results.gain_on_test({"best_test": 0.5}) is None


def test_optimize_help_says_what_the_search_does_now(capsys):
    """auto by default: instructions, demonstrations and edits over one budget, confirmed on held-back data."""
    with pytest.raises(SystemExit):
        main(["optimize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "arena of proposer models" not in text
    for words in ("The default strategy, auto,", "write instructions", "demonstrations", "edits the leader",
                  "over one budget", "val examples the search never saw"):
        assert words in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "instructions, demonstrations and edits over one budget" in " ".join(capsys.readouterr().out.split())
