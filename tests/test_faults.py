"""Flaky endpoints: a real OpenAI-compatible server on 127.0.0.1 (tests/openai_stub.py) injects 500s,
429s with Retry-After, timeouts, dropped connections, empty and garbage replies at set rates. Runs
complete, every failure is recorded per call, retries are bounded, and a failure is never cached."""
import hashlib
import json

import pytest

from conftest import sentiment_dataset
from openai_stub import Stub
from promptlab import planning, results, runs
from promptlab.evaluate import evaluate
from promptlab.prompt import PromptTemplate
from promptlab.scoring.labels import parse_metric
from promptlab.models import RetryPolicy, make_spec
from promptlab.calls import complete

FAST = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.2)
ALL_FAULTS = {"500": 0.06, "429": 0.06, "timeout": 0.04, "drop": 0.06, "empty": 0.06, "garbage": 0.06}


def label_reply(body: dict) -> str:
    text = body["messages"][-1]["content"]
    return "positive" if "great" in text else ("negative" if "awful" in text else "neutral")


def stored_calls(store) -> list[dict]:
    rows = store._all("SELECT key, response, error, error_kind, attempts, failures, purpose FROM llm_calls ORDER BY id")
    return [{"key": r[0], "response": r[1], "error": r[2], "kind": r[3], "attempts": r[4],
             "failures": json.loads(r[5]) if r[5] else [], "purpose": r[6]} for r in rows]


@pytest.fixture
def fast_backoff(monkeypatch):
    """The default policy's bound (4 attempts) with short sleeps, so a test with hundreds of faults is quick."""
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, retry_after=None: 0.01 if retry_after is None
                        else min(retry_after, self.max_delay_s))


def test_every_fault_is_survived_recorded_bounded_and_never_cached(store, tmp_path):
    ds = sentiment_dataset(store, tmp_path, neutral=20)
    prompt = PromptTemplate.from_text("Label the text: {labels}.")
    metric = parse_metric("accuracy", ds.labels)
    with Stub(label_reply, delay_s=0.01, faults=ALL_FAULTS, seed=3, hang_s=1.5) as stub:
        spec = make_spec("openai/flaky", api_base=stub.base, timeout_s=0.5, concurrency=4)
        res = evaluate(store, spec, prompt, ds, ds.frame, metric, retry=FAST)
        injected = dict(stub.injected)
        requests = stub.requests
    assert res.n == 80 and all(injected[k] >= 3 for k in ALL_FAULTS), injected  # every kind happened, often
    calls = stored_calls(store)
    # bounded: no call made more than 4 attempts, and the server saw exactly the attempts we recorded
    # (no hidden retries inside litellm or the OpenAI client)
    assert max(c["attempts"] for c in calls) <= 4
    assert sum(c["attempts"] for c in calls) == requests
    # recorded: one failure line per injected fault, by kind
    kinds = [f.split(":")[0] for c in calls for f in c["failures"]]
    assert len(kinds) == sum(injected.values())
    assert kinds.count("rate_limit") == injected["429"] and kinds.count("empty_reply") == injected["empty"]
    assert kinds.count("timeout") == injected["timeout"]
    assert kinds.count("server_error") + kinds.count("connection") + kinds.count("bad_response") == \
        injected["500"] + injected["drop"] + injected["garbage"]
    stats = store.failure_stats()
    print(f"\ninjected {injected} over {requests} requests; recorded {stats}")
    assert sum(stats["failed_attempts"].values()) == len(kinds) and stats["recovered_calls"] >= 10
    # the replies that made it are right; a call that failed on every attempt is an error, not a label
    ok = res.rows[res.rows["error"].isna()]
    assert (ok["pred"] == ok["gold_norm"]).all() and len(ok) >= 75
    failed_keys = {c["key"] for c in calls if c["error"]}
    assert failed_keys == set(res.rows.loc[res.rows["error"].notna(), "call_key"])
    # never cached: only successes are served, and a healthy rerun asks exactly the failed calls again
    assert set(store.cached_calls([c["key"] for c in calls])) == {c["key"] for c in calls if not c["error"]}


def test_a_rerun_on_a_healed_endpoint_asks_only_what_failed(store, tmp_path):
    ds = sentiment_dataset(store, tmp_path, neutral=20)
    prompt = PromptTemplate.from_text("Label the text: {labels}.")
    metric = parse_metric("accuracy", ds.labels)
    with Stub(label_reply, delay_s=0.0, faults={"500": 0.5, "empty": 0.3}, seed=1) as stub:
        spec = make_spec("openai/flaky", api_base=stub.base, concurrency=2)
        first = evaluate(store, spec, prompt, ds, ds.frame, metric, retry=RetryPolicy(max_attempts=2, base_delay_s=0.001))
        failed = int(first.rows["error"].notna().sum())
        assert failed >= 10 and first.errors == failed
        stub.faults = {}  # the endpoint heals
        before = stub.requests
        second = evaluate(store, spec, prompt, ds, ds.frame, metric, retry=RetryPolicy(max_attempts=2, base_delay_s=0.001))
        assert second.calls == failed and stub.requests - before == failed
        assert second.errors == 0 and second.score == 1.0
        assert evaluate(store, spec, prompt, ds, ds.frame, metric).calls == 0


def test_retries_stop_at_the_bound_and_honour_retry_after(store):
    slept = []
    with Stub(faults={"500": 1.0}) as always_down:
        spec = make_spec("openai/down", api_base=always_down.base)
        out = complete(spec, [{"role": "user", "content": "hi"}], retry=RetryPolicy(max_attempts=3), sleep=slept.append)
        assert not out.ok and out.error_kind == "server_error" and out.attempts == 3 and always_down.requests == 3
        assert len(out.failures) == 3 and len(slept) == 2
    slept.clear()
    with Stub(faults={"429": 1.0}, retry_after_s=7.0) as limited:
        spec = make_spec("openai/limited", api_base=limited.base)
        out = complete(spec, [{"role": "user", "content": "hi"}], retry=RetryPolicy(max_attempts=2), sleep=slept.append)
        assert out.error_kind == "rate_limit" and limited.requests == 2 and slept and slept[0] >= 7.0


def test_an_arena_run_completes_against_flaky_target_and_proposer(store, tmp_path, fast_backoff):
    def proposer_reply(body: dict) -> str:
        k = int(hashlib.sha256(body["messages"][-1]["content"].encode()).hexdigest(), 16) % 5
        return f"<prompt>Label the sentiment, attempt {k}: {{labels}}.</prompt><prompt>Say the label {k}.</prompt>"

    ds = sentiment_dataset(store, tmp_path, neutral=20)
    faults = {"500": 0.05, "429": 0.05, "drop": 0.05, "empty": 0.05, "garbage": 0.05}
    with Stub(label_reply, delay_s=0.0, faults=faults, seed=5) as target_srv, \
            Stub(proposer_reply, delay_s=0.0, faults={"500": 0.2, "429": 0.1, "drop": 0.1, "garbage": 0.1}, seed=6) as prop_srv:
        target = make_spec("openai/flaky-target", api_base=target_srv.base, concurrency=4)
        proposer = make_spec("openai/flaky-proposer", api_base=prop_srv.base)
        cfg = planning.make_config(ds, target, [proposer], seed=1, rounds=3, candidates=2, minibatch_size=8,
                               strategy="arena")
        run_id = runs.create_run(store, cfg)
        summary = runs.execute(store, run_id)
        injected = sum(target_srv.injected.values()) + sum(prop_srv.injected.values())
    print(f"\narena under faults: injected {target_srv.injected} (target) {prop_srv.injected} (proposer); "
          f"recorded {store.failure_stats(run_id)}")
    assert summary["status"] == "finished" and summary["best_val"] is not None
    assert injected >= 20 and sum(prop_srv.injected.values()) >= 2
    stats = store.failure_stats(run_id)
    assert sum(stats["failed_attempts"].values()) == injected and stats["max_attempts"] <= 4
    assert store.repeated_calls() == 0


def test_failures_are_shown_to_the_user(store, tmp_path, capsys, fast_backoff):
    from promptlab.cli.runs import print_run

    ds = sentiment_dataset(store, tmp_path, neutral=20)
    with Stub(label_reply, delay_s=0.0, faults={"500": 0.3}, seed=9) as srv, \
            Stub(lambda body: "<prompt>Label it: {labels}.</prompt>", delay_s=0.0) as prop:
        cfg = planning.make_config(ds, make_spec("openai/t", api_base=srv.base, concurrency=4),
                               [make_spec("openai/p", api_base=prop.base)], seed=2, rounds=1, minibatch_size=8)
        run_id = runs.create_run(store, cfg)
        runs.execute(store, run_id)
    summary = results.summarize(store, run_id)
    assert summary["failures"]["failed_attempts"]["server_error"] >= 5
    print_run(store, summary)
    assert "failed attempts: server_error" in capsys.readouterr().out
