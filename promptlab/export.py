"""Take a stored prompt out of promptlab, as something a program runs: the same messages and generation
parameters promptlab sent when it scored the prompt.

    text       the instruction, the user template and the demonstrations, to read or paste
    messages   JSON: the chat messages template ({input} marks the example), the model, its parameters
    python     a script that sends one input (or a JSONL file of them) through litellm with exactly those messages
    promptfoo  a folder promptfoo runs as it is: its config (the provider, the test split as tests), the python
               script as its prompt function, and promptlab's own reading of a reply as its assertion, so that
               promptfoo's pass rate is promptlab's score (tests/test_export_tools.py runs it with promptfoo itself)

A prompt whose demonstrations are chosen per input (the "similar" method: its nearest train examples) has
no fixed message list: `messages` carries the demo pool and the rule, and the script picks the demos with
the installed promptlab's own `similarity.nearest`, so it shows each input exactly the demos promptlab showed.

The model's API key is never exported: only the name of the environment variable that holds it.
"""
from __future__ import annotations

import io
import json
import pprint
import re
import string
import textwrap
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd
import yaml

from promptlab import __version__
from promptlab.cost import Cost, costs
from promptlab.data import Dataset, stored_dataset
from promptlab.errors import PromptlabError
from promptlab.evaluate import dataset_params, model_key
from promptlab.prompt import PromptTemplate
from promptlab.models import ModelSpec, spec_from_record
from promptlab.results import best_candidate
from promptlab.scoring import reading
from promptlab.scoring.objective import default_spec
from promptlab.scoring.scorers import BINARY, parse_scorer
from promptlab.serve import server_command
from promptlab.store import Store

FORMATS = ("text", "messages", "python", "promptfoo")
EXTENSIONS = {"text": "txt", "messages": "json", "python": "py", "promptfoo": ""}  # promptfoo's is a folder
INPUT = "{input}"  # the example's place in an exported template
LITELLM_VERSION = metadata.version("litellm")  # the exported script sends with the litellm promptlab scored with


@dataclass(frozen=True)
class StoredPrompt:
    """One prompt as a run stored it, with what it was sent to and how."""

    run_id: str
    cand_id: int | None  # None: an eval run's prompt
    template: PromptTemplate
    target: ModelSpec
    params: dict  # the generation parameters of every call promptlab made with it
    dataset: Dataset
    split_seed: int | None
    is_result: bool  # the run's result (its winner, or the baseline it kept)
    metric: str | None = None  # the metric the run scored it with
    judge: dict | None = None
    cost: Cost = Cost()  # what a call with it cost, measured from its stored calls (see cost_split)
    cost_split: str = ""  # the split those calls were on ("test" where it was scored there, else "val")
    score: float | None = None  # promptlab's score of it on its test split (an eval run: on the split it scored)
    score_of: str = ""  # what that score is: 'accuracy on the test split (200 examples)'

    def score_note(self) -> str:
        return f"{self.score:.3f}, {self.score_of}" if self.score is not None else "not scored on its test split"

    def cost_note(self) -> str:
        """'359 tokens in, 1 out, 1.99 s per call (median of 140), measured on test with local/qwen2.5-coder-0.5b'."""
        if not self.cost.calls:
            return "not measured (no stored calls)"
        return f"{self.cost.line()}, measured on {self.cost_split or 'its examples'} with {self.target.label}"


def stored_prompt(store: Store, run_id: str, cand_id: int | None = None) -> StoredPrompt:
    """A run's result (or one of its candidates, by id) with its target, parameters and dataset."""
    rec = store.run_row(run_id)
    if rec is None:
        raise PromptlabError(f"no run '{run_id}': `promptlab runs list` shows the stored runs")
    config = rec["config"]
    dataset = stored_dataset(store, rec["dataset_id"])
    if rec["kind"] == "eval":  # one prompt, scored by `promptlab eval`
        if cand_id is not None:
            raise PromptlabError(f"'{run_id}' is an eval run: it has one prompt and no candidates; drop --candidate")
        template = PromptTemplate.from_record(config["prompt"])
        target, max_tokens, seed = spec_from_record(config["model"]), config.get("max_tokens"), config.get("seed")
        params = dataset_params(target, dataset, max_tokens)
        cost = costs(store, [template.id], model_key(target, params), dataset.id)[template.id]
        summary = rec["summary"] or {}
        scored = _score_of(summary.get("metric") or config.get("metric") or default_spec(dataset),
                           config.get("split", "test"), summary.get("n"), config.get("limit"))
        return StoredPrompt(run_id, None, template, target, params, dataset, seed, True, config.get("metric"),
                            config.get("judge"), cost, config.get("split", "its examples"), summary.get("score"), scored)
    cands = store.candidates(run_id)
    if cands.empty:
        raise PromptlabError(f"run '{run_id}' has no candidates yet: nothing to export")
    best = best_candidate(store.steps(run_id), cands, rec.get("chosen"))
    best_id = int(best.iloc[0]["id"]) if not best.empty else None
    if cand_id is None:
        if best_id is None:
            raise PromptlabError(f"run '{run_id}' has scored no candidate yet: give one with --candidate ID")
        cand_id = best_id
    known = cands.set_index("id")
    if cand_id not in known.index:
        raise PromptlabError(f"run '{run_id}' has no candidate #{cand_id}: its candidates are "
                             f"#{int(cands['id'].min())} to #{int(cands['id'].max())} (`promptlab runs show {run_id}`)")
    template = PromptTemplate.from_record(known.loc[cand_id].to_dict())
    target = spec_from_record(config["target"])
    params = dataset_params(target, dataset, config.get("max_tokens"))
    test_score = known.loc[cand_id, "test_score"]
    split = "test" if pd.notna(test_score) else "val"
    test_idx = dataset.split("test", config.get("split_seed"))["idx"]
    idx = test_idx if split == "test" else dataset.split(split, config.get("split_seed"))["idx"]
    cost = costs(store, [template.id], model_key(target, params), dataset.id, idx)[template.id]
    return StoredPrompt(run_id, int(cand_id), template, target, params, dataset, config.get("split_seed"),
                        cand_id == best_id, config.get("metric"), config.get("judge"), cost, split,
                        float(test_score) if pd.notna(test_score) else None,
                        _score_of(config.get("metric") or default_spec(dataset), "test", len(test_idx), None))


def _score_of(metric: str, split: str, n: int | None, limit: int | None) -> str:
    """'accuracy on the test split (200 examples)': what a stored score is of."""
    where = f"a sample of {n} of the {split} split" if limit else f"the {split} split" + (f" ({n} examples)" if n else "")
    return f"{metric} on {where}"


def same_model(a: ModelSpec, b: ModelSpec) -> bool:
    """The same model as far as replies go (what the cache keys on), whatever its display name or concurrency."""
    return (a.model, a.cache_base, a.params) == (b.model, b.cache_base, b.params)


def transfer_notes(sp: StoredPrompt, dataset: Dataset) -> list[str]:
    """What to know when a stored prompt is scored on another dataset: demos that answer with labels the new
    dataset does not have."""
    if dataset.id == sp.dataset.id or not sp.template.demos or not dataset.has_labels:
        return []
    foreign = sorted({d.label for d in sp.template.demos} - set(dataset.labels))
    if not foreign:
        return []
    return [f"its demonstrations come from '{sp.dataset.name}' and answer with labels '{dataset.name}' does not have "
            f"({', '.join(foreign)}): replies may follow them"]


# --- the formats -----------------------------------------------------------------------------------

def export(sp: StoredPrompt, fmt: str) -> str:
    if fmt not in FORMATS:
        raise PromptlabError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    return {"text": as_text, "messages": as_messages, "python": as_python, "promptfoo": as_promptfoo}[fmt](sp)


def filename(sp: StoredPrompt, fmt: str) -> str:
    """The export's file name (promptfoo's: its folder's)."""
    which = f"cand{sp.cand_id}" if sp.cand_id is not None else "prompt"
    return f"promptlab-{sp.run_id}-{which}" + (f".{EXTENSIONS[fmt]}" if EXTENSIONS[fmt] else f"-{fmt}")


def _placeholders(sp: StoredPrompt) -> dict[str, str]:
    """The example's fields as placeholders: with one input column its {column} is the input itself ({input});
    with several, {column} for each."""
    cols = sp.dataset.input_cols
    return {cols[0]: INPUT} if len(cols) == 1 else {c: "{" + c + "}" for c in cols}


def _safe_params(params: dict) -> dict:
    """The generation parameters without anything secret (a key or an auth header put into a model's params)."""
    out = {}
    for k, v in params.items():
        if re.search(r"(^|_)(api_?key|key|token|secret|password)$", k.lower()):
            continue
        if isinstance(v, dict):  # extra_headers and the like
            v = {h: x for h, x in v.items() if not any(w in h.lower() for w in ("auth", "key", "token", "cookie"))}
        out[k] = v
    return out


def message_template(sp: StoredPrompt) -> list[dict]:
    """The messages promptlab sends, with the example's place marked {input} (and {column} for columns). For
    per-input demos, the messages without demos (they are chosen per input from the pool)."""
    t = sp.template
    fixed = PromptTemplate(t.system, t.user) if t.similar_k else t
    return fixed.render(_placeholders(sp), INPUT, sp.dataset.labels)


def _model(sp: StoredPrompt) -> dict:
    spec = sp.target
    # one endpoint (a replica set serves one model: its first member stands for it)
    out = {"model": spec.model, "api_base": spec.endpoints[0] if spec.endpoints else None,
           "api_key_env": spec.api_key_env}
    if spec.is_local:
        key = spec.model.split("/", 1)[1]
        # In promptlab a zoo model runs in-process; outside it, serve it and call it as an OpenAI-compatible model.
        out.update(model=f"openai/{key}", api_base="http://127.0.0.1:8000/v1",
                   serve=" ".join(["python", *server_command(key, 8000, assemble=False)[1:]]).replace(
                       " --verbose False", ""))  # the user's python (with llama-cpp-python[server]), not ours
    return out


def as_messages(sp: StoredPrompt) -> str:
    t = sp.template
    doc = {
        "source": {"run": sp.run_id, "candidate": sp.cand_id, "result": sp.is_result, "dataset": sp.dataset.name},
        **_model(sp),
        "params": _safe_params(sp.params),
        "input": f"replace {INPUT} in each message's content with the example's text"
                 + (f" (and {{column}} with its columns: {', '.join(sp.dataset.input_cols)})"
                    if len(sp.dataset.input_cols) > 1 else ""),
        "messages": message_template(sp),
        "labels": list(sp.dataset.labels),
        "cost_per_call": {**sp.cost.to_record(), "measured_on": sp.cost_split, "model": sp.target.label},
    }
    if t.similar_k:
        doc["demos_per_input"] = {
            "k": t.similar_k, "by": t.similar_by, "format": t.demo_format,
            "rule": "for each input, the k pool demos nearest to it (promptlab.similarity.nearest), shown before the "
                    "input as user/assistant turns (format 'chat') or appended to the system message (format 'inline')",
            "pool": [d.to_record() for d in t.demos],
        }
    return json.dumps(doc, ensure_ascii=False, indent=2)


def as_text(sp: StoredPrompt) -> str:
    t = sp.template
    head = f"# {sp.run_id}, " + (f"candidate #{sp.cand_id}" if sp.cand_id is not None else "prompt") + \
        (" (the run's result)" if sp.is_result else "") + f" for {sp.target.label} on {sp.dataset.name}"
    parts = [head, "", "## system", t.system or "(none)", "", "## user", t.user]
    if sp.dataset.labels:
        parts += ["", "## labels ({labels})", ", ".join(sp.dataset.labels)]
    if t.demos:
        how = (f"the {t.similar_k} nearest of these {len(t.demos)} for each input ({t.similar_by})" if t.similar_k
               else f"{len(t.demos)}, in this order")
        parts += ["", f"## demonstrations: {how}, as {'chat turns' if t.demo_format == 'chat' else 'inline examples'}"]
        for d in t.demos:
            parts += ["", f"input: {d.text}", f"answer: {d.label}"]
    parts += ["", "## parameters", json.dumps(_safe_params(sp.params), ensure_ascii=False)]
    parts += ["", "## cost per call", sp.cost_note()]
    return "\n".join(parts) + "\n"


# --- python: a script that sends the prompt, and is promptfoo's prompt function ---------------------------------

_SCRIPT = string.Template('''#!/usr/bin/env python
"""$title

Sends the messages and parameters promptlab scored through litellm (pip install litellm==$litellm$needs).
    python $name "the text to classify"     one input (or the text on stdin$multi); prints the reply
    python $name --jsonl rows.jsonl         rows as JSON lines ($fields_hint); prints {"reply": ...} per row
$serve
promptfoo calls promptfoo_messages() for each test (`promptlab export --format promptfoo`).
Cost per call: $cost.
"""
$imports
$prompt_import
MODEL = $model
API_BASE = os.environ.get("PROMPTLAB_API_BASE", $api_base)
API_KEY_ENV = $key_env  # the key is read from this variable; it is never written here
PARAMS = $params
INPUT_COLUMNS = $columns
$prompt_block

def input_text(fields):
    """The example as promptlab shows it: its one input, or its columns as 'name: value' lines."""
    if len(INPUT_COLUMNS) == 1:
        return str(fields["input"] if "input" in fields else fields[INPUT_COLUMNS[0]])
    return "\\n".join(f"{c}: {fields[c]}" for c in INPUT_COLUMNS)

$messages_fn

def promptfoo_messages(context):
    """promptfoo's prompt function: the chat messages for one test's vars."""
    return messages_for(context["vars"])


def complete(fields):
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download at import
    import litellm  # here, not at the top: promptfoo imports this file for its messages alone

    kwargs = dict(PARAMS)
    if API_BASE:
        kwargs["api_base"] = API_BASE
    if API_KEY_ENV and os.environ.get(API_KEY_ENV):
        kwargs["api_key"] = os.environ[API_KEY_ENV]
    elif API_BASE and MODEL.startswith("openai/"):
        kwargs["api_key"] = "no-key"  # a keyless local server: the OpenAI client refuses an empty key
    reply = litellm.completion(model=MODEL, messages=messages_for(fields), **kwargs)
    return reply.choices[0].message.content or ""


def main(argv):
    if argv[:1] == ["--jsonl"]:
        with open(argv[1], encoding="utf-8") as rows:
            for line in rows:
                if line.strip():
                    print(json.dumps({"reply": complete(json.loads(line))}, ensure_ascii=False), flush=True)
        return 0
    text = " ".join(argv) if argv else sys.stdin.read().strip()
    print(complete(json.loads(text) if len(INPUT_COLUMNS) > 1 else {"input": text}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
''')

_FIXED = '''
def messages_for(fields):
    """The messages for one example: its text in place of {input} (and each column in place of its {column})."""
    values = {"input": input_text(fields), **{c: str(fields[c]) for c in INPUT_COLUMNS if c in fields}}
    values = {k: v.replace("{{", "{").replace("}}", "}") for k, v in values.items()}  # as promptlab renders an input
    return [{**m, "content": PLACE.sub(lambda x: values[x.group(1)], m["content"])} for m in MESSAGES]
'''

_PER_INPUT = '''
def messages_for(fields):
    """The messages for one example, its demos the pool's nearest to it (promptlab's own choice and rendering)."""
    text = input_text(fields)
    columns = {c: str(fields[c]) for c in INPUT_COLUMNS} if len(INPUT_COLUMNS) > 1 else {INPUT_COLUMNS[0]: text}
    return TEMPLATE.render(columns, text, LABELS)
'''


def _literal(value) -> str:
    """A Python literal of JSON-like data, one item per line where it is long (read back exactly as written)."""
    return pprint.pformat(value, width=110, sort_dicts=False)


def as_python(sp: StoredPrompt, name: str | None = None) -> str:
    """A script that sends one input (or a JSONL file of them) with the scored messages and parameters. Fixed demos:
    self-contained (litellm only). Demos per input: the installed promptlab picks and renders them, as it did."""
    m = _model(sp)
    t = sp.template
    cols = tuple(sp.dataset.input_cols)
    if t.similar_k:
        prompt_import = ("\n# The demos are chosen per input from a pool, by promptlab's own similarity, so each input "
                         "is shown the\n# demos promptlab showed it: this needs promptlab (pip install promptlab).\n"
                         "from promptlab.prompt import PromptTemplate\n")
        prompt_block = (f"TEMPLATE = PromptTemplate.from_record({_literal(t.to_record())})\n"
                        f"LABELS = {tuple(sp.dataset.labels)!r}\n")
        messages_fn, needs, imports = _PER_INPUT, " and promptlab", ("json", "os", "sys")
    else:
        names = "|".join(re.escape(n) for n in ("input",) + (cols if len(cols) > 1 else ()))
        prompt_import = ""
        prompt_block = (f"MESSAGES = {_literal(message_template(sp))}\n"
                        f"PLACE = re.compile(r{'{(' + names + ')}'!r})  # where the example goes\n")
        messages_fn, needs, imports = _FIXED, "", ("json", "os", "re", "sys")
    title = (f"promptlab {sp.run_id}, " + (f"candidate #{sp.cand_id}" if sp.cand_id is not None else "prompt")
             + f": {sp.target.label} on {sp.dataset.name}.")
    return _SCRIPT.substitute(
        title=title, name=name or filename(sp, "python"), litellm=LITELLM_VERSION, needs=needs,
        multi=", a JSON object of the columns" if len(cols) > 1 else "",
        fields_hint="the columns: " + ", ".join(cols) if len(cols) > 1 else '{"input": "..."}',
        serve=f"Serve the model first:\n    {m['serve']}\n" if m.get("serve") else "",
        cost=sp.cost_note(), model=repr(m["model"]), api_base=repr(m["api_base"]), key_env=repr(m["api_key_env"]),
        params=_literal(_safe_params(sp.params)), columns=repr(cols), prompt_import=prompt_import,
        prompt_block=prompt_block, messages_fn=messages_fn, imports="\n".join(f"import {m}" for m in imports))


# --- promptfoo: a folder its own tool runs, with promptlab's score ------------------------------------------------

PROMPTFOO_VERSION = "0.118.0"  # the version tests/test_export_tools.py runs the export with (newer need Node 22)
PROMPTFOO_CONFIG, PROMPT_FILE, READING_FILE = "promptfooconfig.yaml", "promptlab_prompt.py", "promptlab_reading.py"
_DECODING = ("temperature", "max_tokens", "top_p", "seed", "stop")

_ASSERTION = string.Template('''

# --- written by `promptlab export --format promptfoo`: promptfoo's assertion, with this dataset's labels ----------
LABELS = $labels


def get_assert(output, context):
    """A test passes when its reply reads as its expected label, read as promptlab read it when it scored the prompt."""
    got, how = parse_label(output, LABELS)
    want = normalize_label(context["vars"]["expected"])
    return {"pass": got == want, "score": float(got == want), "reason": f"read as {got!r} ({how}); expected {want!r}"}
''')


_SCORER_ASSERTION = string.Template('''r"""promptfoo's assertion, written by `promptlab export --format promptfoo`: each reply scored against its reference
answer by promptlab's own scorer ($spec: $describe), so the mean of the tests' scores is promptlab's score. It needs
promptlab installed (pip install promptlab) in the Python that runs it (PROMPTFOO_PYTHON).
"""
from promptlab.scoring.scorers import parse_scorer

SCORER = parse_scorer($spec_literal)


def get_assert(output, context):
    score = SCORER.score(output, context["vars"]["reference"])
    return {"pass": score >= $pass_at, "score": score, "reason": f"{SCORER.spec}: {score:.3f}"}
''')


def _scorer_spec(sp: StoredPrompt) -> str | None:
    """The reference scorer the prompt was scored with (None: an LLM judge, which promptfoo cannot repeat here)."""
    spec = sp.metric or default_spec(sp.dataset)
    return None if spec.strip().lower() == "judge" else spec


def reading_file(sp: StoredPrompt) -> str:
    """promptlab's reading of a reply (scoring/reading.py, a leaf of the standard library), copied whole, with
    promptfoo's `get_assert` for this dataset's labels: the pass rate is promptlab's accuracy on the same replies."""
    if sp.dataset.kind != "labels":
        scorer = parse_scorer(_scorer_spec(sp))
        return _SCORER_ASSERTION.substitute(spec=scorer.spec, spec_literal=repr(scorer.spec), describe=scorer.describe(),
                                            pass_at="1.0" if scorer.kind in BINARY else "0.5")
    source = Path(reading.__file__).read_text(encoding="utf-8")
    head = f"# Copied from promptlab {__version__} (promptlab/scoring/reading.py) by `promptlab export`.\n"
    return head + source + _ASSERTION.substitute(labels=repr(tuple(sp.dataset.labels)))


def _promptfoo_provider(m: dict, params: dict) -> dict:
    model = m["model"]
    decoding = {k: v for k, v in params.items() if k in _DECODING}
    if model.startswith("openai/") or m["api_base"]:
        name = model.split("/", 1)[1] if "/" in model else model
        # `passthrough` goes into the request body as written, after everything promptfoo sets itself: the only way
        # promptfoo 0.118 sends a temperature of 0 (see the config's first lines)
        config = {"max_tokens": decoding.get("max_tokens", 1024), "passthrough": decoding}
        if m["api_base"]:
            config["apiBaseUrl"] = m["api_base"]
        if m["api_key_env"]:
            config["apiKeyEnvar"] = m["api_key_env"]
        elif m["api_base"]:
            config["apiKey"] = "no-key"  # a keyless local server
        return {"id": f"openai:chat:{name}", "config": config}
    if model.startswith("anthropic/"):
        return {"id": f"anthropic:messages:{model.split('/', 1)[1]}", "config": decoding}
    return {"id": f"litellm:{model}", "config": decoding}


def _promptfoo_tests(sp: StoredPrompt) -> list[dict]:
    """The test split as tests: the example's input (or columns) as vars, sent as they are, and its label."""
    cols = sp.dataset.input_cols
    tests = []
    for fields, text, label in zip(*(sp.dataset.split("test", sp.split_seed)[c] for c in ("fields", "text", "label"))):
        case = {"vars": {"input": text} if len(cols) == 1 else {c: fields[c] for c in cols}}
        if sp.dataset.kind != "unlabeled":
            case["vars"]["expected" if sp.dataset.kind == "labels" else "reference"] = label
        tests.append(case)
    return tests


def _promptfoo_head(sp: StoredPrompt, m: dict, n: int) -> str:
    """The config's first lines: what it is, promptlab's score on it, and how to run it, with the version tested."""
    which = (f"candidate #{sp.cand_id}" if sp.cand_id is not None else "prompt") + (" (the run's result)"
                                                                                     if sp.is_result else "")
    lines = [f"promptlab {sp.run_id}, {which}: {sp.target.label} on {sp.dataset.name}, its test split ({n} tests).",
             f"promptlab's score: {sp.score_note()}."]
    if sp.dataset.kind == "labels":
        lines.append(f"A test passes when its reply reads as its label, read by promptlab's own code ({READING_FILE}):"
                     " the pass rate is promptlab's accuracy on the same replies.")
    elif _checked(sp):
        lines.append(f"Each test is scored against its reference answer by promptlab's own scorer ({READING_FILE}): "
                     "the mean of the tests' scores is promptlab's score (for a 0-or-1 scorer, the pass rate).")
    else:
        lines.append("promptlab scored its replies with an LLM judge or by hand: the tests carry no assertion (promptfoo's "
                     "llm-rubric with the same rubric would grade them).")
    lines += ["", f"Run it (tested with promptfoo {PROMPTFOO_VERSION} on Node 20):"]
    if m.get("serve"):
        lines.append(f"  {m['serve']}   # serve the model first")
    needs_promptlab = sp.template.similar_k or (sp.dataset.kind != "labels" and _checked(sp))
    python = "a Python with promptlab installed (pip install promptlab)" if needs_promptlab else "Python 3.11+"
    lines += [f"  PROMPTFOO_PYTHON=python3 npx promptfoo@{PROMPTFOO_VERSION} eval -c {PROMPTFOO_CONFIG} --no-cache",
              f"PROMPTFOO_PYTHON is {python}: {PROMPT_FILE} writes each test's messages as promptlab sent them"
              + (", its demos the pool's nearest to the input by promptlab's similarity." if sp.template.similar_k
                 else " (the same file as `promptlab export --format python`)."),
              "", "Why the config reads as it does:",
              "- Decoding: promptfoo 0.118's OpenAI provider leaves a temperature of 0 out of the request (it sends one "
              "only when it is truthy), and the server then samples at its own default (0.8 for llama.cpp, 1.0 for "
              "OpenAI). `passthrough` goes into the request as written, so temperature 0 (greedy, as promptlab sent "
              "it) really goes out.",
              "- Templating is off (env): the prompt function writes the messages whole, so an input with {{ or {% in "
              "it is sent as it is, not read as a Nunjucks template.",
              f"Cost per call: {sp.cost_note()}."]
    return "".join(_comment(line) for line in lines)


def _comment(line: str) -> str:
    """One line of prose as YAML comment lines, wrapped; a command (indented) stays whole, to copy as it is."""
    if not line or line.startswith("  "):
        return f"# {line}".rstrip() + "\n"
    wrapped = textwrap.wrap(line, 116, initial_indent="# ", subsequent_indent="#   " if line.startswith("-") else "# ",
                            break_on_hyphens=False, break_long_words=False)
    return "\n".join(wrapped) + "\n"


def as_promptfoo(sp: StoredPrompt) -> str:
    """The promptfoo config: the prompt function, the provider, the test split as tests, and (labels, or reference
    answers with a scorer) the assertion that reads each reply as promptlab did. It runs beside `promptfoo_files`'
    other files."""
    m = _model(sp)
    tests = _promptfoo_tests(sp)
    doc = {
        "description": f"promptlab {sp.run_id}" + (f" candidate #{sp.cand_id}" if sp.cand_id is not None else "")
                       + f": {sp.target.label} on {sp.dataset.name}, test split ({len(tests)} examples)",
        "env": {"PROMPTFOO_DISABLE_TEMPLATING": "true", "PROMPTFOO_DISABLE_TELEMETRY": "1"},
        "prompts": [f"file://{PROMPT_FILE}:promptfoo_messages"],
        "providers": [_promptfoo_provider(m, sp.params)],
    }
    if _checked(sp):
        doc["defaultTest"] = {"assert": [{"type": "python", "value": f"file://{READING_FILE}:get_assert"}]}
    doc["tests"] = tests
    return _promptfoo_head(sp, m, len(tests)) + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120)


def promptfoo_files(sp: StoredPrompt) -> dict[str, str]:
    """The promptfoo export as the folder it runs from: the config, the prompt function, and the assertion (the
    reading of a label, or the reference scorer) where promptfoo can score as promptlab did."""
    out = {PROMPTFOO_CONFIG: as_promptfoo(sp), PROMPT_FILE: as_python(sp, PROMPT_FILE)}
    if _checked(sp):
        out[READING_FILE] = reading_file(sp)
    return out


def _checked(sp: StoredPrompt) -> bool:
    """Whether promptfoo can score the replies as promptlab did: labels, or reference answers and a scorer."""
    return sp.dataset.kind == "labels" or (sp.dataset.kind == "reference" and _scorer_spec(sp) is not None)


def files(sp: StoredPrompt, fmt: str) -> dict[str, str]:
    """An export as {file name: content}: one file, or promptfoo's folder."""
    return promptfoo_files(sp) if fmt == "promptfoo" else {filename(sp, fmt): export(sp, fmt)}


def download(sp: StoredPrompt, fmt: str) -> tuple[str, str | bytes]:
    """An export as one download, (file name, content): its file, or promptfoo's folder as a zip."""
    out = files(sp, fmt)
    if len(out) == 1:
        return next(iter(out.items()))
    folder = filename(sp, fmt)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in out.items():
            z.writestr(f"{folder}/{name}", content)
    return folder + ".zip", buf.getvalue()
