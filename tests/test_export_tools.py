"""Exports run by their own tools, with promptlab's score: the promptfoo folder by promptfoo itself (the pinned
release, installed by `make promptfoo`), the Python script by Python, both against a zoo model behind a real
llama.cpp server, on the test rows promptlab scored through the same server. Under greedy decoding each reply is
promptlab's reply, and so each score is promptlab's score, exactly.

Covered: a prompt with fixed demos, one with demos chosen per input, labels with a space and regex characters in
them, inputs with quotes, a newline and Nunjucks braces, and reference answers scored by a reference scorer."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from openai_stub import Stub
from promptlab import serve
from promptlab.data import import_dataset
from promptlab.evaluate import evaluate
from promptlab.export import PROMPTFOO_VERSION, export, filename, files, stored_prompt
from promptlab.jobs import record_eval
from promptlab.models import make_spec
from promptlab.prompt import Demo, PromptTemplate
from promptlab.scoring.labels import parse_metric
from promptlab.scoring.objective import parse_objective
from promptlab.store import Store

PROMPTFOO = Path(os.environ.get("PROMPTFOO_BIN") or ROOT / ".venv" / "promptfoo" / "node_modules" / ".bin" / "promptfoo")
LABELS = ("positive", "negative", "not sure (?)")  # a space, parentheses and a '?' in one label

GOOD = ["I love this {}, it works great", "Excellent {}, would buy again", "The {} is wonderful and cheap",
        "Best {} I have owned", "Five stars for the {}", "Really happy with the {}", "The {} exceeded my hopes"]
BAD = ["The {} broke after a day", "Terrible {}, a waste of money", "I hate this {}", "The {} is awful and slow",
       "Do not buy the {}", "Worst {} ever", "The {} stopped working at once"]
UNSURE = ["Not sure about the {} yet", "The {} is fine, I guess?", "Hard to say if the {} is any good",
          "The {} arrived; no opinion so far", "Can't decide about the {}", "Maybe the {} is ok", "The {}: who knows"]
THINGS = ["kettle", "lamp", "chair"]


@pytest.fixture(scope="module")
def server():
    with serve.llama_server("qwen2.5-coder-0.5b", alias="qwen-export", n_ctx=2048) as base:
        yield base


def reviews(tmp_path: Path) -> Path:
    rows = [(t.format(x), lab) for x in THINGS for lab, group in zip(LABELS, (GOOD, BAD, UNSURE)) for t in group]
    rows += [('She said "meh" about the {{widget}}\nand {% nothing %} else', "not sure (?)"),
             ("Great value; 100% [recommended] (really)", "positive")]
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"review": t, "label": lab}) + "\n" for t, lab in rows), encoding="utf-8")
    return path


PROMPTS = {"fixed demos": (4, 0), "demos per input": (15, 3)}  # (demos from train, nearest shown per input)


@pytest.fixture(scope="module")
def scored(tmp_path_factory, server):
    """The dataset in a store, and each prompt kept as an eval run of promptlab's on its test split."""
    tmp = tmp_path_factory.mktemp("exports")
    store = Store(tmp / "x.duckdb")
    ds = import_dataset(store, reviews(tmp))[0]
    assert set(ds.labels) == set(LABELS)
    spec = make_spec("openai/qwen-export", api_base=server)
    train = ds.split("train")
    demos = [Demo(t, lab, (("review", t),), int(i)) for t, lab, i in zip(train["text"], train["label"], train["idx"])]
    base = PromptTemplate("Classify the review's sentiment. Answer with exactly one of: {labels}.", "{input}")
    runs = {}
    for name, (n, k) in PROMPTS.items():
        _, summary = record_eval(store, spec, base.with_demos(demos[:n], similar_k=k), ds,
                                 parse_metric("accuracy", ds.labels), split="test")
        assert summary["n"] == len(ds.split("test"))
        runs[name] = summary["run_id"]
    yield store, runs
    store.close()


def run_promptfoo(folder: Path) -> list[dict]:
    env = {**os.environ, "PROMPTFOO_PYTHON": sys.executable, "PYTHONPATH": str(ROOT),  # promptlab, as if installed
           "PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1",
           "PROMPTFOO_CONFIG_DIR": str(folder / ".promptfoo"), "PROMPTFOO_CACHE_ENABLED": "false"}
    out = folder / "results.json"
    proc = subprocess.run([str(PROMPTFOO), "eval", "-c", "promptfooconfig.yaml", "--no-cache", "--no-progress-bar",
                           "--no-table", "-o", str(out)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode in (0, 100), proc.stdout[-3000:] + proc.stderr[-3000:]  # 100: some tests failed
    return json.loads(out.read_text(encoding="utf-8"))["results"]["results"]


def run_script(script: Path, texts: list[str], base: str) -> list[str]:
    rows = script.with_suffix(".jsonl")
    rows.write_text("".join(json.dumps({"input": t}) + "\n" for t in texts), encoding="utf-8")
    env = {**os.environ, "PROMPTLAB_API_BASE": base, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script), "--jsonl", str(rows)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line)["reply"] for line in proc.stdout.splitlines()]


@pytest.mark.timeout(900)
@pytest.mark.skipif(not PROMPTFOO.exists(), reason="promptfoo is not installed: `make promptfoo` (make test does it)")
@pytest.mark.parametrize("name", list(PROMPTS))
def test_promptfoo_and_the_python_script_reproduce_promptlabs_score(tmp_path, scored, server, name):
    store, runs = scored
    sp = stored_prompt(store, runs[name])
    assert bool(sp.template.similar_k) == (name == "demos per input")
    expected = _promptlab_replies(store, sp)
    for fname, content in files(sp, "promptfoo").items():
        (tmp_path / fname).write_text(content, encoding="utf-8")
    config = (tmp_path / "promptfooconfig.yaml").read_text(encoding="utf-8")
    head = "\n".join(config.splitlines()[:8])  # the first lines say what it is, its score and how to run it
    assert f"promptfoo {PROMPTFOO_VERSION}" in head and sp.score_note() in head, head

    got = run_promptfoo(tmp_path)
    assert len(got) == len(expected)
    assert {r["vars"]["input"]: r["response"]["output"] for r in got} == expected  # each input got promptlab's reply
    passed = sum(bool(r["success"]) for r in got)
    assert passed == round(sp.score * len(got)) and passed / len(got) == pytest.approx(sp.score, abs=1e-6)

    script = tmp_path / "promptlab_prompt.py"  # the same file as `export --format python`
    assert script.read_text(encoding="utf-8") == export(sp, "python").replace(filename(sp, "python"), script.name)
    texts = list(expected)
    assert run_script(script, texts, server) == [expected[t] for t in texts]


def _promptlab_replies(store, sp) -> dict[str, str]:
    """promptlab's own reply to each test input: the eval again, every call a hit in the store (none is sent)."""
    test = sp.dataset.split("test")
    res = evaluate(store, sp.target, sp.template, sp.dataset, test, parse_metric("accuracy", sp.dataset.labels),
                   max_tokens=sp.params["max_tokens"], save=False)
    assert res.calls == 0 and res.cached == len(test), "promptlab's replies come from its store"
    return dict(zip(res.rows["text"], res.rows["reply"]))


def last_words(body: dict) -> str:
    """A reply that overlaps its reference in part: the last three words of the input."""
    return " ".join(body["messages"][-1]["content"].replace("'", " ").split()[-3:])


@pytest.mark.skipif(not PROMPTFOO.exists(), reason="promptfoo is not installed: `make promptfoo` (make test does it)")
def test_a_reference_scorer_travels_too_and_promptfoos_mean_score_is_promptlabs(tmp_path, store):
    """Reference answers: each test is scored by promptlab's own scorer, so the mean of promptfoo's test scores is
    promptlab's token-F1 score (the replies come from a scripted OpenAI-compatible server)."""
    ds = import_dataset(store, ROOT / "data" / "short_answers.csv", kind="reference")[0]
    assert ds.kind == "reference"
    with Stub(last_words, delay_s=0.0) as stub:
        spec = make_spec("openai/stub-target", api_base=stub.base)
        _, summary = record_eval(store, spec, PromptTemplate("Answer briefly.", "{input}"), ds,
                                 parse_objective("token_f1", ds), split="test")
        sp = stored_prompt(store, summary["run_id"])
        assert 0 < sp.score < 1  # partial overlaps: a mean, not a pass rate
        for fname, content in files(sp, "promptfoo").items():
            (tmp_path / fname).write_text(content, encoding="utf-8")
        got = run_promptfoo(tmp_path)
    assert len(got) == summary["n"]
    assert sum(r["score"] for r in got) / len(got) == pytest.approx(sp.score, abs=1e-6)
