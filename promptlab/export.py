"""Take a stored prompt out of promptlab, as something a program runs: the same messages and generation
parameters promptlab sent when it scored the prompt.

    text       the instruction, the user template and the demonstrations, to read or paste
    messages   JSON: the chat messages template ({input} marks the example), the model, its parameters
    python     a short script that sends one input through litellm with exactly those messages and prints the reply
    promptfoo  a promptfoo config: the prompt, the provider and the test split as tests with their expected answers

A prompt whose demonstrations are chosen per input (the "similar" method: its nearest train examples) has
no fixed message list: `messages` carries the demo pool and the rule, and the script picks the demos with
promptlab's own `similarity.nearest`, so it shows each input exactly the demos promptlab showed.

The model's API key is never exported: only the name of the environment variable that holds it.
"""
from __future__ import annotations

import json
import pprint
import re
from dataclasses import dataclass

import pandas as pd
import yaml

from promptlab.cost import Cost, costs
from promptlab.data import Dataset, stored_dataset
from promptlab.errors import PromptlabError
from promptlab.evaluate import dataset_params, model_key
from promptlab.prompt import PromptTemplate
from promptlab.models import ModelSpec, spec_from_record
from promptlab.results import best_candidate
from promptlab.serve import server_command
from promptlab.store import Store

FORMATS = ("text", "messages", "python", "promptfoo")
EXTENSIONS = {"text": "txt", "messages": "json", "python": "py", "promptfoo": "yaml"}
INPUT = "{input}"  # the example's place in an exported template


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
        return StoredPrompt(run_id, None, template, target, params, dataset, seed, True, config.get("metric"),
                            config.get("judge"), cost, config.get("split", "its examples"))
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
    split = "test" if pd.notna(known.loc[cand_id, "test_score"]) else "val"
    idx = dataset.split(split, config.get("split_seed"))["idx"]
    cost = costs(store, [template.id], model_key(target, params), dataset.id, idx)[template.id]
    return StoredPrompt(run_id, int(cand_id), template, target, params, dataset, config.get("split_seed"),
                        cand_id == best_id, config.get("metric"), config.get("judge"), cost, split)


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
    which = f"cand{sp.cand_id}" if sp.cand_id is not None else "prompt"
    return f"promptlab-{sp.run_id}-{which}.{EXTENSIONS[fmt]}"


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
                   serve=" ".join(server_command(key, 8000, assemble=False)).replace(" --verbose False", ""))
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


_SCRIPT = '''#!/usr/bin/env python
"""{title}

Sends one input through litellm with the messages and parameters promptlab scored, and prints the reply.
    python {name} "the text to classify"        (or the text on stdin){serve}
Cost per call: {cost}.
"""
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download at import
import litellm  # noqa: E402

MODEL = {model!r}
API_BASE = os.environ.get("PROMPTLAB_API_BASE", {api_base!r})
API_KEY_ENV = {key_env!r}  # the key is read from this variable; it is never written here
PARAMS = {params}
MESSAGES = {messages}
{demo_block}

def messages_for(text):
    text = text.replace("{{{{", "{{").replace("}}}}", "}}")  # as promptlab renders an input
    fill = lambda s: s.replace("{{input}}", text)
{demo_fill}


def main():
    text = " ".join(sys.argv[1:]) if len(sys.argv) > 1 else sys.stdin.read().strip()
    kwargs = dict(PARAMS)
    if API_BASE:
        kwargs["api_base"] = API_BASE
    if API_KEY_ENV and os.environ.get(API_KEY_ENV):
        kwargs["api_key"] = os.environ[API_KEY_ENV]
    elif API_BASE and MODEL.startswith("openai/"):
        kwargs["api_key"] = "no-key"  # a keyless local server: the OpenAI client refuses an empty key
    reply = litellm.completion(model=MODEL, messages=messages_for(text), **kwargs)
    print(reply.choices[0].message.content)


if __name__ == "__main__":
    main()
'''


def _literal(value) -> str:
    """A Python literal of JSON-like data, one item per line where it is long (read back exactly as written)."""
    return pprint.pformat(value, width=110, sort_dicts=False)


def as_python(sp: StoredPrompt) -> str:
    if len(sp.dataset.input_cols) > 1:
        raise PromptlabError(f"'{sp.dataset.name}' has several input columns ({', '.join(sp.dataset.input_cols)}): "
                             "the script takes one text; export --format messages and fill each column instead")
    m = _model(sp)
    t = sp.template
    if t.similar_k:  # demos per input: promptlab's own rendering picks them, so they match what was scored
        demo_block = ("\n# The demos are chosen per input from a pool, by promptlab's similarity (pip install promptlab's "
                      "requirements).\nfrom promptlab.prompt import PromptTemplate\n\nTEMPLATE = PromptTemplate.from_record("
                      f"{_literal(t.to_record())})\nLABELS = {tuple(sp.dataset.labels)!r}\n")
        demo_fill = f"    return TEMPLATE.render({{{sp.dataset.input_cols[0]!r}: text}}, text, LABELS)"
    else:
        demo_block = ""
        demo_fill = "    return [{**m, \"content\": fill(m[\"content\"])} for m in MESSAGES]"
    serve = f"\nServe the model first:\n    {m['serve']}" if m.get("serve") else ""
    title = (f"promptlab {sp.run_id}, " + (f"candidate #{sp.cand_id}" if sp.cand_id is not None else "prompt")
             + f": {sp.target.label} on {sp.dataset.name}.")
    return _SCRIPT.format(title=title, name=filename(sp, "python"), serve=serve, cost=sp.cost_note(), model=m["model"],
                          api_base=m["api_base"], key_env=m["api_key_env"],
                          params=_literal(_safe_params(sp.params)), messages=_literal(message_template(sp)),
                          demo_block=demo_block, demo_fill=demo_fill)


def _promptfoo_provider(m: dict, params: dict) -> dict:
    model = m["model"]
    config = {k: v for k, v in params.items() if k in ("temperature", "max_tokens", "top_p", "seed", "stop")}
    if model.startswith("openai/") or m["api_base"]:
        name = model.split("/", 1)[1] if "/" in model else model
        provider = {"id": f"openai:chat:{name}"}
        if m["api_base"]:
            config["apiBaseUrl"] = m["api_base"]
        if m["api_key_env"]:
            config["apiKeyEnvar"] = m["api_key_env"]
        elif m["api_base"]:
            config["apiKey"] = "no-key"  # a keyless local server
    elif model.startswith("anthropic/"):
        provider = {"id": f"anthropic:messages:{model.split('/', 1)[1]}"}
    else:
        provider = {"id": f"litellm:{model}"}
    return provider | {"config": config}


_LABEL_CHECK = (
    "const hit = (l) => new RegExp('(^|[^\\\\p{L}\\\\p{N}])' + l.toLowerCase().replace(/[.*+?^${}()|[\\]\\\\]/g, "
    "'\\\\$&') + '($|[^\\\\p{L}\\\\p{N}])', 'u').test(output.toLowerCase());\n"
    "return hit(context.vars.expected) && context.vars.labels.filter((l) => l !== context.vars.expected).every((l) => !hit(l));"
)


def as_promptfoo(sp: StoredPrompt) -> str:
    """A promptfoo config: the chat prompt with {{input}}, the provider, the test split as tests. A labelled test
    passes when the reply names its label and no other (promptlab's reading, simplified)."""
    m = _model(sp)
    cols = sp.dataset.input_cols
    names = ["input"] if len(cols) == 1 else list(cols)  # the variables the prompt fills

    def to_vars(content: str) -> str:
        for name in names:
            content = content.replace("{" + name + "}", "{{" + name + "}}")
        return content

    messages = [{**msg, "content": to_vars(msg["content"])} for msg in message_template(sp)]
    test = sp.dataset.split("test", sp.split_seed)
    tests = []
    for fields, text, label in zip(test["fields"], test["text"], test["label"]):
        # The chat prompt is JSON, and a variable lands inside one of its strings: each value is JSON-escaped so
        # that quotes and newlines in an input read back as themselves.
        values = {"input": text} if len(cols) == 1 else {c: fields[c] for c in cols}
        case = {"vars": {k: json.dumps(v, ensure_ascii=False)[1:-1] for k, v in values.items()}}
        if sp.dataset.kind == "labels":
            case["vars"]["expected"] = label
        elif sp.dataset.kind == "reference":
            case["assert"] = [{"type": "similar", "value": label, "threshold": 0.8}]
        tests.append(case)
    doc = {
        "description": f"promptlab {sp.run_id}" + (f" candidate #{sp.cand_id}" if sp.cand_id is not None else "")
                       + f": {sp.target.label} on {sp.dataset.name}, test split ({len(tests)} examples)",
        "prompts": [json.dumps(messages, ensure_ascii=False)],
        "providers": [_promptfoo_provider(m, sp.params)],
        "tests": tests,
    }
    if sp.dataset.kind == "labels":
        doc["defaultTest"] = {"vars": {"labels": list(sp.dataset.labels)},
                              "assert": [{"type": "javascript", "value": _LABEL_CHECK}]}
    note = ""
    if sp.template.similar_k:
        note = ("# Note: this prompt picks its demos per input (the nearest of a pool); promptfoo sends the fixed\n"
                "# messages below without them. Use `promptlab export --format python` for the exact prompt.\n")
    if m.get("serve"):
        note += f"# Serve the model first: {m['serve']}\n"
    note += f"# Cost per call: {sp.cost_note()}\n"
    return note + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120)
