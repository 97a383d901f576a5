"""A run in words: the lines the CLI, the Results page and the report print (why its search ended, how its result
was chosen, what each part of it adds, what a call costs, who decided, where the calls went) and the Markdown report
for a team review. It reads what results.py reads back, and computes no figure of its own.
"""
from __future__ import annotations

import pandas as pd

from promptlab.cost import Cost
from promptlab.results import PART_NAMES, family_view, leaderboard, stop_words, summarize
from promptlab.scoring import stats as S
from promptlab.store import Store
from promptlab.text import format_score


def stages_line(stages: list[dict]) -> str | None:
    """Where a run's calls went and what came of them, in one line per stage (the CLI and the report)."""
    if not stages:
        return None
    parts = []
    for st in stages:
        props = (f", {st['proposer_calls']} proposer calls, {st['usable']} usable of {st['written']} written"
                 + (f" ({st['copied']} dropped for copying an input)" if st.get("copied") else "")
                 if st["proposer_calls"] else "")
        props += f", {st['never_scored']} never scored" if st.get("never_scored") else ""
        lead = f", leader {st['leader_after']:.3f} after it" if st["leader_after"] is not None else ""
        parts.append(f"{st['stage']}: {st['calls']} target calls, {st['candidates']} candidates{props}{lead}"
                     + (f", ended: {st['ended']}" if st.get("ended") else "")
                     + (" (the result came from here)" if st["result_from_here"] else ""))
    return "stages — " + "; ".join(parts)


def cost_line(summary: dict) -> str | None:
    """'Cost per call (test): result 359 tokens in, 1 out, 1.99 s per call (median of 140); baseline 61 tokens
    in, ...'; None before anything was scored."""
    c = summary.get("costs") or {}
    parts = [f"{name} {Cost.from_record(c[key]).line()}" for key, name in (("result", "result"), ("baseline", "baseline"))
             if c.get(key) and c[key].get("calls")]
    if not parts:
        return None
    if summary.get("best_id") is not None and summary.get("best_proposer") == "baseline":
        parts = parts[:1]  # the result is the baseline
    elif len(parts) == 2:
        mine, theirs = Cost.from_record(c["result"]), Cost.from_record(c["baseline"])
        ratios = [f"{a / b:.1f}x the baseline's {what}" for a, b, what in
                  ((mine.prompt_tokens, theirs.prompt_tokens, "tokens"), (mine.latency_s, theirs.latency_s, "latency"))
                  if a is not None and b]
        if ratios:
            parts[-1] += f" ({', '.join(ratios)})"
    return f"Cost per call ({c.get('split', 'val')}): " + "; ".join(parts)


def stop_reason(summary: dict) -> str | None:
    """Why the run's search ended, in words, or None (a run still going, or stored without a reason)."""
    return stop_words(summary.get("reason"))


def status_line(summary: dict) -> str:
    """A run's status in words (the Results page, the CLI and the report): 'finished'; the calls that failed for good
    only when there were some ('finished with 2 failed calls'); then why its search ended, when known ('finished —
    every round ran')."""
    failed = (summary.get("failures") or {}).get("failed_calls") or 0
    line = summary["status"] + (f" with {failed} failed call{'' if failed == 1 else 's'}" if failed else "")
    why = stop_reason(summary)
    return line + (f" — {why}" if why else "")


def result_line(summary: dict) -> str | None:
    """How the result was chosen, in words (the CLI, the Results page and the report), or None for runs
    stored before confirmation existed."""
    r = summary.get("result")
    if not r:
        return None
    line = r["reading"]
    if r.get("gap") is not None:
        line += (f" The finalist's search score {r['search_score']:.3f} against {r['confirm_score']:.3f} on the "
                 f"held-back examples: a gap of {r['gap']:+.3f} (how much the search overrated it).")
    return line


def leader_line(summary: dict) -> str | None:
    """When the decision kept the start although the search's leader scored higher on the held-back examples: so,
    with the leader's held-back gain and CI, and how to ship it anyway; when the analyst chose the result, so. Else
    None."""
    r, chosen = summary.get("result") or {}, summary.get("chosen")
    if chosen:
        return (f"The analyst chose #{chosen['candidate_id']} as the result over the decision's #{summary.get('decided_id')}"
                + (f" ({chosen['note']})" if chosen.get("note") else "") + ".")
    if not r or r.get("replaced_baseline") or not r.get("leader_id") or not (r.get("diff") or 0) > 0:
        return None
    lo, hi = r.get("ci") or (None, None)
    ci = f", {S.level_text(r['level'])} CI [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else ""
    return (f"The baseline stays the result, although the search's leader #{r['leader_id']} scored {r['diff']:+.3f} over "
            f"it on the {r['n_confirm']} held-back examples{ci}: the evidence does not rule out that it is worse by "
            f"{r.get('margin') or 0:g} or more. To ship it anyway: `promptlab runs choose {summary['run_id']} "
            f"{r['leader_id']}` (or 'Ship #{r['leader_id']} instead' on the Results page).")


def simplified_lines(summary: dict) -> list[str]:
    """What the simplification tried after the decision, one line per variant (the stored readings)."""
    return [x["reading"] for x in summary.get("simplified") or [] if x.get("reading")]


def parts_lines(summary: dict) -> list[str]:
    """What each part of the result adds on test, in words, each with its cost per call."""
    parts = {p["role"]: p for p in summary.get("parts") or []}
    res = parts.get("result")
    if not res:
        return []
    out, shown = [], set()
    for role, what in (("start_with_demos", "The instruction adds"), ("instruction_alone", "The demos add"),
                       ("start", "The whole result adds")):
        p = parts.get(role)
        if p and p["result_minus_it"] is not None and p["id"] not in shown:
            shown.add(p["id"])
            lo, hi = p["ci"]
            out.append(f"{what} {p['result_minus_it']:+.3f} on test (95% CI [{lo:+.3f}, {hi:+.3f}], n={p['n']}): "
                       f"#{res['id']} {format_score(res['test'])} against {PART_NAMES[role]} (#{p['id']}) "
                       f"{format_score(p['test'])}; {_per_call(res)} per call against {_per_call(p)}.")
    return out


def _per_call(part: dict) -> str:
    tokens = "?" if part.get("tokens_in") is None else f"{part['tokens_in']:.0f} tokens"
    return tokens + ("" if part.get("latency_s") is None else f", {part['latency_s']:.2f} s")


def decisions_line(summary: dict) -> str | None:
    """Who decided the rounds, in one line (the CLI and the report), or None when nothing was recorded."""
    dec = summary.get("decisions") or {}
    if not dec:
        return None
    parts = [f"{who}: " + ", ".join(f"{n} {a}" for a, n in sorted(acts.items())) for who, acts in sorted(dec.items())]
    return "decisions — " + "; ".join(parts)


def calls_line(summary: dict) -> str | None:
    """The run's LLM calls in one line (the CLI and the Results page), or None for a run that has not started.

    "Made" counts every call stored for the run, over all its executions: a semi-automatic run pauses and
    resumes each round, and the live counters only see the last execution (whose replayed steps are read
    back from the cache, so they show up there as hits, not as new calls).
    """
    s = summary
    if s.get("cache_hit_rate") is None and not s.get("calls_stored_for_run"):
        return None
    stored = s.get("calls_stored_for_run") or {}
    made = (stored.get("eval", 0), stored.get("propose", 0))
    line = f"calls made for this run: {made[0]} target + {made[1]} proposer"
    if s.get("judge_calls"):
        line += f" + {s['judge_calls']} judge (outside the budget)"
    hits = f" ({s['cache_hit_rate']:.0%} hits)" if s.get("cache_hit_rate") is not None else ""
    if made != (s["target_calls"], s["proposer_calls"]):
        line += (f"; its last execution (after a pause or a resume) made {s['target_calls'] + s['proposer_calls']} "
                 f"and read {s['cached_calls']} from the cache{hits}, replayed steps included")
    else:
        line += f"; {s['cached_calls']} answered from the cache{hits}"
    return line + f"; {s['repeated_calls']} repeated"


def failures_line(summary: dict) -> str | None:
    """The run's endpoint failures in one line (the CLI and the Results page), or None when there were none."""
    fails = summary.get("failures") or {}
    if not fails.get("failed_attempts"):
        return None
    kinds = ", ".join(f"{k} {v}" for k, v in fails["failed_attempts"].items())
    return (f"failed attempts: {kinds}; {fails['recovered_calls']} call(s) recovered on retry, {fails['failed_calls']} "
            "failed for good (scored as wrong, never cached, asked again on the next run)")


def call_line(call: dict) -> str:
    """One proposer call (results.proposals) in a line, for the Results page and the CLI: 'fake/a: asked 4, written
    3, usable 2 (#5, #6)', or for a critique 'fake/c: critique of #3'; with its error, and when the reply came from
    the cache."""
    if call["call"] == "critique":
        line = f"{call['proposer']}: critique of #{call['criticized']}"
    else:
        made = ", ".join(f"#{c}" for c in call["candidates"])
        line = (f"{call['proposer']}: asked {call['asked']}, written {call['written']}, usable {call['usable']}"
                + (f" ({made})" if made else ""))
    if call.get("error"):
        line += f"; error: {call['error'][:120]}"
    return line + ("; the reply came from the cache" if call.get("cached") else "")


def markdown_report(store: Store, run_id: str) -> str:
    """A run as Markdown for a team review: setup, headline with n and CIs, leaderboard, attribution."""
    s = summarize(store, run_id)
    rec = store.run_row(run_id)
    board = leaderboard(store, run_id)
    fam = family_view(store, run_id)
    base = board[board["proposer"] == "baseline"].head(1)
    best = board[board["id"] == s["best_id"]].head(1)
    lines = [
        *_report_setup(s, run_id),
        *_report_result(s, base, best),
        *_report_proposers(s, fam),
        *_report_leaderboard(board),
        "", f"Meta-prompt template: {len(rec['config']['meta_prompt'])} characters, stored with the run.",
    ]
    return "\n".join(lines) + "\n"


def _ci_text(frame: pd.DataFrame, which: str) -> str:
    """' [low, high]': the first row's `which` ('val', 'test') confidence interval, or nothing without one."""
    if frame.empty:
        return ""
    lo, hi = frame.iloc[0][f"{which}_ci_low"], frame.iloc[0][f"{which}_ci_high"]
    return f" [{format_score(lo)}, {format_score(hi)}]" if lo == lo and lo is not None else ""


def _report_setup(s: dict, run_id: str) -> list[str]:
    """The report's title and setup lines: data, target, metric, proposers, status, decisions, stages."""
    return [
        f"# promptlab run {run_id}",
        "",
        f"- Dataset: **{s['dataset']}**; target **{s['target']}**; metric **{s['metric']}**; seed {s['seed']}",
        f"- Proposers: {', '.join(p['model'] + ' (' + p['family'] + ')' for p in s['proposers'])}",
        f"- Status: {status_line(s)}; {s['rounds']} round(s), {s['candidates']} candidates, "
        f"{s['gated']} stopped at the minibatch gate ({s['calls_saved_by_gate']} calls saved)",
        *([f"- {dec[0].upper()}{dec[1:]}"] if (dec := decisions_line(s)) else []),
        *([f"- {st[0].upper()}{st[1:]}"] if (st := stages_line(s["stages"])) else []),
        "",
    ]


def _report_result(s: dict, base: pd.DataFrame, best: pd.DataFrame) -> list[str]:
    """The report's result section: baseline and result on val and test with CIs, how the result was chosen, its
    cost per call, and the result prompt. `base`, `best`: their one-row leaderboard frames."""
    f = format_score
    return [
        "## Result (95% CIs; test is held out: no proposer ever saw it)",
        "",
        "| prompt | val | test |",
        "|---|---|---|",
        f"| baseline | {f(s['baseline_val'])}{_ci_text(base, 'val')} (n={s['n_val']}) | {f(s['baseline_test'])}{_ci_text(base, 'test')} (n={s['n_test']}) |",
        f"| result (#{s['best_id']}, {s['best_proposer']}) | {f(s['best_val'])}{_ci_text(best, 'val')} | {f(s['best_test'])}{_ci_text(best, 'test')} |",
        "",
        *([result_line(s), ""] if result_line(s) else []),
        *[f"- {line}" for line in simplified_lines(s)], *([""] if simplified_lines(s) else []),
        *([leader, ""] if (leader := leader_line(s)) else []),
        *([cost, ""] if (cost := cost_line(s)) else []),
        *(["What each part of the result adds:", "", *[f"- {line}" for line in parts], ""] if (parts := parts_lines(s)) else []),
        "Result prompt:",
        "",
        "```text",
        (s["best_prompt"] or "").strip(),
        "```",
        "",
    ]


def _report_proposers(s: dict, fam: pd.DataFrame) -> list[str]:
    """The report's proposer table: family, relation to the target (from the family view `fam`), the proposals asked
    for, written and usable (with the usable share of those asked), best val, rounds won."""
    lines = [
        "## Proposers",
        "",
        "| proposer | family | relation to target | asked | written | usable (share of asked) | best val | wins |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rel = dict(zip(fam["proposer"], fam["relation"])) if len(fam) else {}
    for p in s["proposers"]:
        rate = f"{p['usable']} ({p['usable_rate']:.0%})" if p["usable_rate"] is not None else str(p["usable"])
        lines.append(f"| {p['model']} | {p['family']} | {rel.get(p['model'], '')} | {p['asked']} | {p['written']} | "
                     f"{rate} | {format_score(p['best_val'])} | {p['wins']} |")
    return lines


def _report_leaderboard(board: pd.DataFrame) -> list[str]:
    """The report's leaderboard: the top 20 by val, with test where scored and cost per call."""
    f = format_score
    lines = ["", "## Leaderboard (val; test where scored; cost per call on the val examples scored)", "",
             "| # | round | proposer | val | test | tokens in | latency | prompt |", "|---|---|---|---|---|---|---|---|"]
    for r in board.head(20).itertuples():
        text = (f"[+{r.demos_shown} demos] " if r.demos_shown else "") + " ".join(str(r.text).split()).replace("|", "\\|")
        val = f(r.val_score) if r.val_score == r.val_score else f"{r.status} (minibatch {f(r.minibatch_score)})"
        tokens = "—" if r.tokens_in is None or r.tokens_in != r.tokens_in else f"{r.tokens_in:.0f}"
        latency = "—" if r.latency_s is None or r.latency_s != r.latency_s else f"{r.latency_s:.2f} s"
        lines.append(f"| {r.id} | {r.round} | {r.proposer} | {val} | {f(r.test_score)} | {tokens} | {latency} | {text[:120]} |")
    return lines
