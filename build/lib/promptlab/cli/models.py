"""`models list|add|remove`: the embedded zoo and the models configured under a name."""
from __future__ import annotations

import json

from promptlab.cli.common import OPTIONS, open_store, print_json
from promptlab.errors import PromptlabError
from promptlab.local import ZOO, zoo_status
from promptlab.models import make_spec


def register(sub) -> None:
    md = sub.add_parser("models", help="the local zoo and configured models").add_subparsers(dest="action", metavar="ACTION")
    p = md.add_parser("list", parents=[OPTIONS], help="the zoo with install status, plus configured models")
    p.set_defaults(func=cmd_models_list)
    p = md.add_parser("add", parents=[OPTIONS], help="configure a model under a name")
    p.add_argument("name")
    p.add_argument("--model", required=True, help="litellm model string, e.g. openai/gpt-4o-mini or openai/qwen2.5 with --api-base")
    p.add_argument("--api-base", help="e.g. http://127.0.0.1:11434/v1 for Ollama; several replicas of one model "
                   "comma-separated (each call goes to the least busy)")
    p.add_argument("--api-key-env", help="NAME of the environment variable holding the key (never the key)")
    p.add_argument("--family", help="override the inferred family")
    p.add_argument("--size-b", type=float, help="override the inferred size, in billions of parameters")
    p.add_argument("--param", action="append", help="generation parameter name=value (repeat)")
    p.add_argument("--concurrency", type=int, help="max calls in flight to each endpoint (default: 2 on 127.0.0.1, "
                   "8 for hosted providers)")
    p.set_defaults(func=cmd_models_add)
    p = md.add_parser("remove", parents=[OPTIONS], help="remove a configured model")
    p.add_argument("name")
    p.set_defaults(func=cmd_models_remove)


def cmd_models_list(args) -> int:
    zoo = [zoo_status(k) for k in ZOO]
    configured = [{"name": n, **rec} for n, rec in open_store(args).list_models()]
    if args.json:
        print_json({"zoo": zoo, "configured": configured})
        return 0
    print("embedded zoo (offline, in-process llama.cpp):")
    for z in zoo:
        print(f"  {z['model']:<28} {z['family']:<8} {z['size_b']:>6}B  {z['status']}")
        if z["install"]:
            print(f"      install: {z['install']}")
    print("configured models:" if configured else "configured models: none (add one with `models add`)")
    for c in configured:
        base = f" at {c['api_base']}" if c.get("api_base") else ""
        key = f", key from ${c['api_key_env']}" if c.get("api_key_env") else ""
        print(f"  {c['name']:<28} {c['model']}{base} ({c['family']}{key})")
    return 0


def _params(pairs: list[str] | None) -> dict:
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PromptlabError(f"--param '{pair}' must look like name=value, e.g. temperature=0.7")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params


def cmd_models_add(args) -> int:
    spec = make_spec(
        args.model, api_base=args.api_base, api_key_env=args.api_key_env, family=args.family, size_b=args.size_b,
        params=_params(args.param), concurrency=args.concurrency, name=args.name,
    )
    open_store(args).save_model(args.name, spec.to_record())
    print(f"saved model '{args.name}': {spec.model} (family {spec.family}, size {spec.size_b or '?'}B)")
    return 0


def cmd_models_remove(args) -> int:
    if not open_store(args).delete_model(args.name):
        raise PromptlabError(f"no configured model named '{args.name}' (see `models list`)")
    print(f"removed model '{args.name}'")
    return 0
