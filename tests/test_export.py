"""Taking a stored prompt out of promptlab (export) and scoring it anywhere (eval --run).

The target is a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/openai_stub.py) whose reply is a digest of
the exact messages and parameters it received, so "the same reply" means "the same request"."""
import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, sentiment_dataset
from openai_stub import Stub
from promptlab import planning, results, runs
from promptlab.errors import PromptlabError
from promptlab.evaluate import evaluate
from promptlab.export import export, files, stored_prompt
from promptlab.scoring.labels import parse_metric
from promptlab.models import make_spec
from promptlab.store import Store


def digest_reply(body: dict) -> str:
    """A label the text suggests, and a digest of everything that decides a reply."""
    text = body["messages"][-1]["content"]
    label = "positive" if "great" in text else ("negative" if "awful" in text else "neutral")
    seen = json.dumps([body["messages"], body.get("temperature"), body.get("max_tokens")], sort_keys=True)
    return f"{label} ({hashlib.sha256(seen.encode()).hexdigest()[:10]})"


@pytest.fixture
def stub():
    with Stub(digest_reply, delay_s=0.0) as srv:
        yield srv


def fewshot_run(store, ds, spec, methods):
    cfg = planning.make_config(ds, spec, [], strategy="fewshot", rounds=1, seed=2, methods=methods, trials_per_round=4,
                           confirm=0.0, minibatch_size=6)
    run_id = runs.create_run(store, cfg)
    runs.execute(store, run_id)
    return run_id


def with_demos(store, run_id, similar: bool) -> int:
    cands = store.candidates(run_id)
    hit = cands[(cands["demos"].map(len) > 0) & ((cands["similar_k"] > 0) == similar)]
    assert not hit.empty, cands[["id", "proposer", "similar_k"]]
    return int(hit.iloc[0]["id"])


def run_script(path, text: str, base: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}  # a keyless server, as promptlab calls it
    env |= {"PROMPTLAB_API_BASE": base, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(path), text], capture_output=True, text=True, timeout=120, env=env,
                          cwd=path.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.mark.parametrize("similar", [False, True], ids=["fixed demos", "nearest demos per input"])
def test_the_exported_script_gets_the_same_reply_as_eval(tmp_path, stub, similar):
    store = Store(tmp_path / "x.duckdb")
    store.migrate()
    ds = sentiment_dataset(store, tmp_path, neutral=10)
    spec = make_spec("openai/stub-target", api_base=stub.base)
    run_id = fewshot_run(store, ds, spec, ["similar"] if similar else ["random", "stratified"])
    cand = with_demos(store, run_id, similar)
    sp = stored_prompt(store, run_id, cand)
    examples = ds.split("test").head(3)
    res = evaluate(store, spec, sp.template, ds, examples, parse_metric("accuracy", ds.labels),
                   max_tokens=sp.params["max_tokens"], save=False)
    script = tmp_path / "winner.py"
    script.write_text(export(sp, "python"))
    store.close()
    for text, reply in zip(examples["text"], res.rows["reply"]):
        assert run_script(script, text, stub.base) == reply


def test_messages_text_and_promptfoo_carry_the_prompt_and_never_a_key(tmp_path, stub, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-secret-123")
    store = Store(tmp_path / "x.duckdb")
    store.migrate()
    ds = sentiment_dataset(store, tmp_path, neutral=10)
    spec = make_spec("openai/stub-target", api_base=stub.base, api_key_env="STUB_KEY")
    run_id = fewshot_run(store, ds, spec, ["stratified"])
    cand = with_demos(store, run_id, similar=False)
    sp = stored_prompt(store, run_id, cand)
    outs = {fmt: export(sp, fmt) for fmt in ("text", "messages", "python", "promptfoo")}
    folder = files(sp, "promptfoo")
    assert not any("sk-secret-123" in o for o in [*outs.values(), *folder.values()])

    doc = json.loads(outs["messages"])
    msgs = doc["messages"]
    demos = sp.template.demos
    assert msgs[-1] == {"role": "user", "content": "{input}"} and doc["api_key_env"] == "STUB_KEY"
    turns = msgs[1:-1] if msgs[0]["role"] == "system" else msgs[:-1]
    assert [m["role"] for m in turns] == ["user", "assistant"] * len(demos)
    assert [m["content"] for m in turns[1::2]] == [d.label for d in demos]
    assert doc["params"]["max_tokens"] == sp.params["max_tokens"] and doc["params"]["temperature"] == 0.0
    assert "{labels}" not in json.dumps(msgs)  # filled in: the labels are known at export

    assert all(d.text in outs["text"] for d in demos) and sp.template.system in outs["text"]

    pf = yaml.safe_load(outs["promptfoo"])
    assert sorted(folder) == ["promptfooconfig.yaml", "promptlab_prompt.py", "promptlab_reading.py"]
    assert folder["promptfooconfig.yaml"] == outs["promptfoo"] and "def promptfoo_messages" in folder["promptlab_prompt.py"]
    test = ds.split("test")
    assert len(pf["tests"]) == len(test)
    assert [t["vars"]["expected"] for t in pf["tests"]] == test["label"].tolist()
    assert [t["vars"]["input"] for t in pf["tests"]] == test["text"].tolist()  # sent as they are: templating is off
    assert pf["env"]["PROMPTFOO_DISABLE_TEMPLATING"] == "true"
    provider = pf["providers"][0]
    assert provider["id"] == "openai:chat:stub-target"
    assert provider["config"]["apiBaseUrl"] == stub.base and provider["config"]["apiKeyEnvar"] == "STUB_KEY"
    # promptfoo 0.118 drops a falsy temperature from the request; passthrough is sent as written
    assert provider["config"]["passthrough"]["temperature"] == 0.0
    assert pf["prompts"] == ["file://promptlab_prompt.py:promptfoo_messages"]
    assert pf["defaultTest"]["assert"] == [{"type": "python", "value": "file://promptlab_reading.py:get_assert"}]

    # the result by default; a candidate that is not there is named with the ones that are
    assert stored_prompt(store, run_id).is_result
    with pytest.raises(PromptlabError, match="no candidate #999: its candidates are #1 to"):
        stored_prompt(store, run_id, 999)
    with pytest.raises(PromptlabError, match="no run 'nope'"):
        stored_prompt(store, "nope")
    store.close()


def run_cli(*args, db):
    env = {**os.environ, "PROMPTLAB_DB": str(db)}
    proc = subprocess.run([sys.executable, "-m", "promptlab", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_eval_scores_a_stored_prompt_from_the_cache_and_on_another_dataset(tmp_path, stub):
    db = tmp_path / "x.duckdb"
    store = Store(db)
    store.migrate()
    ds = sentiment_dataset(store, tmp_path, neutral=10)
    spec = make_spec("openai/stub-target", api_base=stub.base)
    run_id = fewshot_run(store, ds, spec, ["stratified"])
    result = results.summarize(store, run_id)
    store.close()

    # the run's result on its own test split: every call is the run's own, from the cache
    code, out, err = run_cli("eval", "--run", run_id, "--json", db=db)
    assert code == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["calls"] == 0 and s["cached"] == s["n"] and abs(s["score"] - result["best_test"]) < 1e-9

    # a candidate with demos on another dataset whose labels differ: scored, with a note about its demos
    other = tmp_path / "other.csv"
    other.write_text("text,label\n" + "".join(f"great thing {i},good\nawful thing {i},bad\n" for i in range(12)))
    store = Store(db)
    cand = with_demos(store, run_id, similar=False)
    store.close()
    code, out, err = run_cli("eval", "--run", run_id, "--candidate", str(cand), "--dataset", str(other), db=db)
    assert code == 0, err
    assert f"from      run {run_id}, candidate #{cand}" in out and "answer with labels 'other' does not have" in out

    code, out, err = run_cli("export", run_id, "--format", "python", "--out", str(tmp_path), db=db)
    assert code == 0 and (tmp_path / f"promptlab-{run_id}-cand{result['best_id']}.py").is_file(), err
    # promptfoo's export is a folder: without --out it says so, with --out it writes the three files whole
    code, out, err = run_cli("export", run_id, "--format", "promptfoo", db=db)
    assert code != 0 and "is a folder of 3 files" in err and "--out" in err and "Traceback" not in err
    code, out, err = run_cli("export", run_id, "--format", "promptfoo", "--out", str(tmp_path / "pf"), db=db)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pf").iterdir()) == ["promptfooconfig.yaml", "promptlab_prompt.py",
                                                                   "promptlab_reading.py"]

    code, out, err = run_cli("eval", "--candidate", "2", "--dataset", "x", "--prompt", "hi", db=db)
    assert code != 0 and "--candidate picks a prompt of a stored run" in err and "Traceback" not in err
    code, out, err = run_cli("export", "nope", db=db)
    assert code != 0 and "no run 'nope'" in err and "Traceback" not in err


def test_a_zoo_model_is_exported_as_a_served_openai_compatible_model(store, tmp_path):
    """promptlab runs zoo models in-process; outside it the export says how to serve one and calls it over HTTP
    (without assembling the model file just to name it)."""
    from promptlab.prompt import PromptTemplate
    from promptlab.export import StoredPrompt

    ds = sentiment_dataset(store, tmp_path, neutral=10)
    sp = StoredPrompt("run-x", 3, PromptTemplate.from_text("Label it: {labels}."), make_spec("local/qwen2.5-coder-0.5b"),
                      {"temperature": 0.0, "max_tokens": 8}, ds, 0, True)
    doc = json.loads(export(sp, "messages"))
    assert doc["model"] == "openai/qwen2.5-coder-0.5b" and doc["api_base"] == "http://127.0.0.1:8000/v1"
    assert "llama_cpp.server" in doc["serve"] and "--logits_all False" in doc["serve"]
    script = export(sp, "python")
    assert "Serve the model first" in script and "MODEL = 'openai/qwen2.5-coder-0.5b'" in script
    compile(script, "exported.py", "exec")


def test_a_named_input_column_and_secret_params_are_exported_right(store, tmp_path):
    """A prompt that names its input column ('Review: {review}') is filled with the input, as evaluate fills it; a
    key put into a model's params never leaves."""
    from promptlab.data import import_dataset
    from promptlab.prompt import PromptTemplate
    from promptlab.export import StoredPrompt, message_template

    path = tmp_path / "reviews.csv"
    path.write_text("review,label\n" + "".join(f"great {i},pos\nawful {i},neg\n" for i in range(6)))
    ds = import_dataset(store, path)[0]
    t = PromptTemplate.from_text("Review: {review}\nAnswer {labels}.")
    sp = StoredPrompt("run-y", 1, t, make_spec("openai/m", api_base="http://127.0.0.1:9/v1,http://127.0.0.1:10/v1"),
                      {"temperature": 0.0, "max_tokens": 4, "api_key": "sk-secret-9",
                       "extra_headers": {"Authorization": "Bearer sk-secret-9", "X-Team": "a"}}, ds, 0, True)
    row = ds.frame.iloc[0]
    sent = t.render(row["fields"], row["text"], ds.labels)
    template = message_template(sp)
    assert [m["content"].replace("{input}", row["text"]) for m in template] == [m["content"] for m in sent]
    outs = [export(sp, f) for f in ("text", "messages", "python", "promptfoo")]
    assert not any("sk-secret-9" in o for o in outs) and "X-Team" in outs[1]
    assert json.loads(outs[1])["api_base"] == "http://127.0.0.1:9/v1"  # one replica stands for the set
