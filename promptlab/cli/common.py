"""What the command groups share: --db/--debug/--json, the store, JSON output, and flags several commands parse."""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from promptlab.optimize.ceiling import is_ceiling
from promptlab.errors import PromptlabError
from promptlab.progress import Progress
from promptlab.prompt import PromptTemplate
from promptlab.models import ModelSpec, resolve_model
from promptlab.read import read_prompt_file
from promptlab.scoring import objective
from promptlab.scoring.objective import JudgeSettings, parse_scale
from promptlab.store import Store
from promptlab.text import format_score as fmt  # noqa: F401 - the commands' short name for it


def _shared_options() -> argparse.ArgumentParser:
    # Both the top parser and each command take these; SUPPRESS keeps a command's default from overwriting a flag
    # given before the command (main() fills in the defaults).
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--db", default=argparse.SUPPRESS, help="DuckDB file (default: $PROMPTLAB_DB, else data/promptlab.duckdb in a clone, "
                         "~/.local/share/promptlab/promptlab.duckdb when installed)")
    options.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    options.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="end with one JSON line")
    return options


OPTIONS = _shared_options()  # the parent of every command's parser


def unescape(text: str) -> str:
    r"""Honour \n, \t and \\ typed on a shell command line, leaving every other character as is."""
    return re.sub(r"\\(n|t|\\)", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


def open_store(args) -> Store:
    return Store(args.db)


def _json_safe(obj):
    """NaN/inf become null: strict JSON readers (jq, JSON.parse) reject Python's NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def print_json(obj) -> None:
    print(json.dumps(_json_safe(obj), ensure_ascii=False, default=str, allow_nan=False))


def load_prompt(args) -> PromptTemplate:
    """--prompt (escapes honoured) or --prompt-file, with --system as the system message when given."""
    system = unescape(args.system) if args.system is not None else None
    if args.prompt_file:
        prompt = PromptTemplate.from_file_text(read_prompt_file(args.prompt_file, "--prompt-file"))
        return PromptTemplate(system=system, user=prompt.user) if system is not None else prompt
    return PromptTemplate.from_text(unescape(args.prompt), system=system)


def names(text: str | None) -> tuple[str, ...]:
    """A comma-separated list of names ('A, B,') as a tuple ('A', 'B')."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def model_list(store: Store, text: str) -> list[ModelSpec]:
    return [resolve_model(n, store) for n in names(text)]


def metric_spec(args, ceilings_ok: bool = False) -> str | None:
    """--metric with its --constraint floors, as one spec ('recall:fraud; precision:fraud>=0.4'). Cost ceilings
    (tokens<=300) are not floors of the metric: `ceilings` reads them, where a command takes them."""
    given = getattr(args, "constraint", None) or []
    if not ceilings_ok and any(is_ceiling(c) for c in given):
        raise PromptlabError("a cost ceiling (tokens<=, latency<=, price<=) limits what a search may propose: give it "
                             "to `optimize`; this command reports each prompt's cost per call instead")
    floors = [c for c in given if not is_ceiling(c)]
    if not floors:
        return args.metric
    return objective.metric_spec(args.metric or "accuracy", floors=floors)


def ceilings(args) -> list[str]:
    """The cost ceilings among --constraint (tokens<=300, latency<=0.5, price<=0.2)."""
    return [c for c in getattr(args, "constraint", None) or [] if is_ceiling(c)]


def constraint_arg(p, cost: bool = False) -> None:
    p.add_argument("--constraint", action="append", metavar="METRIC>=VALUE" + (" | MEASURE<=VALUE" if cost else ""),
                   help="a floor the metric must respect, e.g. precision:fraud>=0.4 beside --metric recall:fraud "
                        "(repeat for several): candidates that miss a floor rank below all that meet it"
                        + ("; or a cost ceiling per call: tokens<=300 (mean prompt tokens), latency<=0.5 (median "
                           "seconds), price<=0.2 (dollars per 1,000 calls, for models in litellm's cost map): a "
                           "candidate that costs more is dropped at its first rung, and proposers are told" if cost else ""))


def judge_args(p) -> None:
    p.add_argument("--judge", help="the LLM judge model (metric 'judge'); any litellm model or configured name")
    p.add_argument("--rubric", help="the judge's rubric text, or @FILE")
    p.add_argument("--judge-scale", help="the judge's scale, e.g. 1-5 (default) or 0-1")


def rubric(text: str | None) -> str:
    if text and text.startswith("@"):
        return read_prompt_file(text[1:], "--rubric")
    return unescape(text) if text else ""


def scale(text: str) -> tuple[int, int]:
    return parse_scale(text, "--judge-scale")


def judge_settings(args) -> JudgeSettings | None:
    """The run's or eval's judge from --judge/--rubric/--judge-scale; None without --judge or --rubric (the
    dataset's own judge applies)."""
    if not (getattr(args, "judge", None) or getattr(args, "rubric", None)):
        return None
    return JudgeSettings(args.judge, rubric(args.rubric), scale(args.judge_scale) if args.judge_scale else None)


@contextmanager
def terminal_progress(show: bool) -> Iterator[Progress]:
    """A job's Progress, drawn as one line on stderr while a terminal watches (`show`), and cleared when it ends."""
    draw = (lambda p: print(f"\r  {p.line()}", end="", file=sys.stderr, flush=True)) if show else None
    try:
        yield Progress(on_change=draw)
    finally:
        if show:
            print("\r\x1b[2K", end="", file=sys.stderr)  # the progress line, cleared
