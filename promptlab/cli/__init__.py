"""The command line, `python -m promptlab`: what the dashboard does, headless, assembled from one module per group."""
from __future__ import annotations

import argparse
import sys
import traceback

from promptlab.cli import datasets, export, grade, models, optimize, review, runs, study
from promptlab.cli import eval as evaluation
from promptlab.cli.common import OPTIONS
from promptlab.errors import PromptlabError

GROUPS = (datasets, models, evaluation, export, optimize, review, grade, study, runs)  # the order `--help` lists them in


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptlab", parents=[OPTIONS],
        description="Find the best prompt for an LLM on a labeled dataset. What the dashboard does, headless.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("db", None), ("debug", False), ("json", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except PromptlabError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: every finished call is stored; run the same command again to continue", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line unless --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"error: unexpected {type(exc).__name__}: {exc} (run again with --debug for details)", file=sys.stderr)
        return 1
