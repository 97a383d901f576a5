"""Integration: the real local qwen2.5-coder-0.5b, in-process and through a real llama_cpp.server that
litellm reaches over HTTP on 127.0.0.1. No fakes here."""
import json

import duckdb
import pytest

from conftest import DEMO
from promptlab.data import import_dataset
from promptlab.split import stratified_sample
from promptlab.evaluate import evaluate
from promptlab.prompt import PromptTemplate
from promptlab import serve
from promptlab.scoring.labels import parse_metric
from promptlab.models import make_spec
from promptlab.calls import complete

PROMPT = PromptTemplate.from_text(
    "Route the customer message to one team: {labels}.\n"
    "billing = payments, invoices, refunds; technical = bugs and errors; account = login, users, settings; "
    "feedback = opinions and requests; security = suspicious access or leaks.\nAnswer with the team name only."
)


@pytest.fixture(scope="module")
def qwen():
    return make_spec("local/qwen2.5-coder-0.5b")


def test_real_model_evaluates_and_the_second_run_makes_zero_calls(store, qwen):
    ds = import_dataset(store, DEMO)[0]
    examples = stratified_sample(ds.split("test"), 12, seed=0)
    metric = parse_metric("accuracy", ds.labels)
    first = evaluate(store, qwen, PROMPT, ds, examples, metric)
    assert first.calls == 12 and first.cached == 0 and first.errors == 0
    assert 0.0 <= first.score <= 1.0 and first.prompt_tokens > 12 * 20 and first.completion_tokens > 0
    assert (first.rows["reply"].str.len() > 0).all()
    second = evaluate(store, qwen, PROMPT, ds, examples, metric)
    assert second.calls == 0 and second.cached == 12
    assert second.rows["reply"].tolist() == first.rows["reply"].tolist()
    assert store.call_stats()["calls"] == 12


def test_cyrillic_round_trip(store, qwen, tmp_path):
    rows = ["текст;тональность"]
    good = ["Отличный отель, всё понравилось", "Прекрасный сервис и вкусный завтрак", "Очень доволен, приеду снова"]
    bad = ["Грязный номер и хамство на ресепшене", "Ужасно, никогда больше", "Шумно, холодно, дорого"]
    rows += [f"{t};позитив" for t in good] + [f"{t};негатив" for t in bad]
    path = tmp_path / "отзывы.csv"
    path.write_bytes("\n".join(rows).encode("cp1251"))  # a typical Russian Excel export
    ds = import_dataset(store, path)[0]
    assert set(ds.labels) == {"позитив", "негатив"} and ds.name == "отзывы"
    prompt = PromptTemplate.from_text("Определи тональность отзыва: {labels}. Ответь одним словом.")
    result = evaluate(store, qwen, prompt, ds, ds.frame, parse_metric("recall:Негатив", ds.labels))
    assert result.errors == 0 and result.n == 6
    store.close()
    con = duckdb.connect(str(store.path))
    stored_text = {r[0] for r in con.execute("SELECT text FROM examples").fetchall()}
    requests = [json.loads(r[0]) for r in con.execute("SELECT request FROM llm_calls").fetchall()]
    con.close()
    assert set(good + bad) <= stored_text
    assert all("Определи тональность" in req["messages"][0]["content"] for req in requests)
    assert {req["messages"][1]["content"] for req in requests} == set(good + bad)


@pytest.fixture(scope="module")
def llama_server():
    """A real OpenAI-compatible llama.cpp server on 127.0.0.1 serving the zoo's qwen-0.5B."""
    with serve.llama_server("qwen2.5-coder-0.5b", alias="qwen-local", n_ctx=2048) as base:
        yield base


def test_litellm_reaches_a_real_llama_cpp_server(store, llama_server):
    spec = make_spec("openai/qwen-local", api_base=llama_server)
    assert spec.family == "qwen" and spec.concurrency == 2
    ds = import_dataset(store, DEMO)[0]
    examples = stratified_sample(ds.split("test"), 8, seed=1)
    result = evaluate(store, spec, PROMPT, ds, examples, parse_metric("accuracy", ds.labels))
    assert result.errors == 0, result.rows["error"].dropna().tolist()
    assert result.calls == 8 and result.prompt_tokens > 0 and 0.0 <= result.score <= 1.0
    again = evaluate(store, spec, PROMPT, ds, examples, parse_metric("accuracy", ds.labels))
    assert again.calls == 0


def test_a_dead_server_is_a_recorded_connection_error_not_a_crash(store):
    spec = make_spec("openai/nobody", api_base=f"http://127.0.0.1:{serve.free_port()}/v1", timeout_s=5)
    from promptlab.models import RetryPolicy

    out = complete(spec, [{"role": "user", "content": "hi"}], retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
    assert not out.ok and out.error_kind == "connection" and out.attempts == 2


def test_two_real_llama_cpp_servers_as_replicas_share_the_work(store):
    """Two llama.cpp servers on different ports stand in for replicas; calls go to both, the
    replies are the model's (same as one server gives), and the replicas share one cache."""
    ds = import_dataset(store, DEMO)[0]
    examples = stratified_sample(ds.split("test"), 12, seed=2)
    metric = parse_metric("accuracy", ds.labels)
    with serve.llama_server("smollm2-135m", n_threads=1, n_ctx=2048) as a, \
            serve.llama_server("smollm2-135m", n_threads=1, n_ctx=2048) as b:
        pair = make_spec("openai/smollm2-135m", api_base=f"{a},{b}")
        both = evaluate(store, pair, PROMPT, ds, examples, metric)
        assert both.errors == 0 and both.calls == 12, both.rows["error"].dropna().tolist()
        served = store.served_by()
        assert set(served) == {a, b} and min(served.values()) >= 3, served
        assert evaluate(store, pair, PROMPT, ds, examples, metric).calls == 0
        one = evaluate(store, make_spec("openai/smollm2-135m", api_base=a), PROMPT, ds, examples, metric)
        assert one.errors == 0 and one.rows["reply"].tolist() == both.rows["reply"].tolist()
