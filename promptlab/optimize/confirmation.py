"""What ships, one job from the search's leader to the tested result: val held back, the decision, the simplification.

The decision at the end of a search, the simplification of what it chose, and the held-out finale:

1. **The decision.** The finalists (the best by search score that beat the start there) and the start are scored on
   the examples no search step saw: the held-back part of val, and (config version >= 4) the train rows that no step
   read or showed, kept to val's label mix, as far as the budget left pays for them. A finalist replaces the start
   when it scores higher there and a one-sided paired test shows it is not worse than the start by the harm margin
   or more (Tango's exact test, `stats.harm_compare`): a prompt truly worse than the start by the margin ships in at
   most 1 - confidence of searches, and one exactly as good does no harm. The rule was chosen for the mean true
   held-out gain of what ships (benchmarks/confirm_bench.py); runs stored before it tested "not better" (margin 0).
   A second look (`second_look`): when the budget the simplification holds back could pay for more unseen train rows,
   each look tests at half the level (Bonferroni), and a leader that leads but fails the first is tested again on all
   the examples. The first look alone, at n ~ 80, turned down a leader +0.18 on test (implicatures, 0.5B target).
2. **The simplification** (prefer "simple", the default): the result's parts are tried away one at a time, fixed
   demos in place of per-input ones, the start's instruction with the result's demos, fewer demos. A variant is kept
   when, on the same examples, it beats the start as the decision requires, a non-inferiority test shows it no worse
   than the decided result by the simplification margin, and it costs no more per call (tokens and latency). The tests
   against the start run as a fixed sequence (the decided result first, then each variant tried, stopping at the first
   that fails), so the harm bound holds for whatever ships.
3. **The finale**: the result, the search's leader, the top few and the starts on test, outside the budget; with
   `test_parts`, also the result's parts (its instruction alone, the start's instruction with its demos), so every
   result says what each part adds and what it costs per call.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Generator, Iterator

import numpy as np
import pandas as pd

from promptlab.cost import Cost, cost_of_calls
from promptlab.optimize.ceiling import broken
from promptlab.split import holdout_split, proportional_subset
from promptlab.optimize.base import BudgetExhausted, Confirmed, OptimizeContext, Step, TestScored, WinnerChosen
from promptlab.optimize.pool import Cand, Pool, ci_of, rank_score
from promptlab.optimize.settings import setting
from promptlab.prompt import PromptTemplate
from promptlab.scoring import stats as S
from promptlab.text import number_or_none as _f



@dataclass(frozen=True)
class Simplified(Step):
    """One variant of the result tried after the decision: what changed, how it compares with the start and with the
    decided result on the decision's examples, what it costs per call against the prompt it simplifies, and whether
    it was kept."""

    kind = "simplified"
    candidate_id: int
    of_id: int  # the prompt it simplifies (the result so far)
    change: str  # one of SIMPLIFICATIONS
    accepted: bool
    n: int  # examples both were compared on
    vs_start: dict = field(default_factory=dict)  # diff, ci, p (of "worse by the harm margin or more"), margin
    vs_result: dict = field(default_factory=dict)  # diff, ci, p (of "worse by the simplification margin or more")
    cost: dict = field(default_factory=dict)  # {"variant": Cost record, "current": Cost record}
    reading: str = ""


@dataclass(frozen=True)
class ResultParts(Step):
    """The candidates that show what each part of the result adds, scored on test with it (ids; None where the part
    does not apply): its instruction without demos, and the start's instruction with its demos."""

    kind = "result_parts"
    result_id: int
    start_id: int
    instruction_alone: int | None = None
    start_with_demos: int | None = None


# The simplifications, in the order they are tried: the one that saves the most first (per-input demos defeat a
# server's prefix cache: measured 5-9x the latency of fixed ones), then the analyst's own words, then fewer tokens,
# then the cheapest candidate the search could not tell from the result (the rule `--prefer cheap` named before, now
# held to the same tests).
SIMPLIFICATIONS = ("fixed demos", "start's instruction", "fewer demos", "cheaper contender")


@dataclass(frozen=True, kw_only=True)
class ConfirmationSettings:
    """The settings of what ships, declared once: how much of val is held back, how the decision tests a finalist
    against the start, how the result is simplified, and what is scored on test. Every strategy over a pool has them;
    a chain reads its first stage's (`decision`)."""

    test_top: int = setting(3, "prompts scored on test at the end, besides the baselines and the result", type="int",
                            low=0, label="Prompts scored on test")
    # The decision's design, chosen by benchmarks/confirm_bench.py for the mean true held-out gain of what ships, with a
    # truly worse prompt (by the harm margin, 0.02) shipping in at most 5% of searches (section "confirmation" of
    # RESULTS.md; 20 candidates a search, start accuracy 0.5, figures at 15% / 30% of answers changed): holding back
    # 0.5 of val and testing one finalist with the harm test ships in 73% / 42% of searches a candidate that is truly
    # +0.10, a mean true gain of +0.073 / +0.042 per search, where the sign test of "not better" at 0.6 held back (the
    # design before) shipped 57% / 29% and +0.057 / +0.029, on the 140 val examples of a 400-row file; on DSPy's
    # 100-example val: 56% / 28% against 37% / 19%. Its worst harm rate over the scenarios: 0.043 (the exact level of one
    # test: at most 0.0498). A second finalist changed the mean gain by less than 0.001; holding back 0.3 or 0.4 lost gain.
    # With a second look as large as the first (second_look): 84% / 55%, +0.084 / +0.055 (69% / 38% at val 100), its
    # worst simulated harm 0.033 (exact: at most 0.0403).
    confirm: float = setting(0.5, "share of val held back from the search to confirm the finalists (0: pick the best "
                             "search score, as runs before confirmation did)", type="float", low=0.0, high=0.8,
                             label="Val held back to confirm")
    confidence: float = setting(0.95, "a candidate replaces the baseline only when it scores higher on the held-back "
                                "examples and a paired test at this level shows it is not worse by the harm margin",
                                type="float", low=0.5, high=0.999, label="Confidence to replace the baseline")
    harm_margin: float = setting(0.02, "a candidate truly worse than the baseline by this much or more is what the "
                                 "decision guards against (it ships in at most 1 - confidence of searches); one worse "
                                 "by less is no harm", type="float", low=0.0, high=0.2, label="Harm margin")
    simplify_margin: float = setting(0.05, "a simpler, cheaper variant of the result ships when a paired test shows it "
                                     "no worse than the result by this much or more (with --prefer simple)",
                                     type="float", low=0.0, high=0.2, label="Simplification margin")
    finalists: int = setting(1, "best candidates by search score that are confirmed on the held-back examples",
                             type="int", low=1, high=10, label="Finalists")
    # Config version 4 (issue 31), each False for runs stored before, which replay as they ran:
    # the decision also reads the train rows no search step read or showed (confirmation.decision_set);
    decide_on_unseen: bool = True
    # a second look: when the first test fails and the budget the simplification held back can pay for more unseen
    # train rows, the finalists are tested again on all the examples, each look at half the level (Bonferroni: the
    # harm bound holds over both). Decided before the first look from the rows and budget left, never from its answers.
    second_look: bool = True
    # the result's parts (its instruction alone, the start's instruction with its demos) are scored on test with it.
    test_parts: bool = True
    # variants of the result the budget holds back room for, to simplify it after the decision (prefer "simple").
    simplify_reserve: int = 2

    @property
    def decision(self) -> "ConfirmationSettings":
        """Whose settings the decision at the end reads (`decide`): its own."""
        return self

    def confirm_reserve(self, n_confirm: int, prefer: str = "score") -> int:
        """Target requests the decision holds back from the search: the baseline and each finalist on the held-back
        examples; with prefer "simple", room for `simplify_reserve` variants too (one more with "cheap", as runs stored
        before the simplification did)."""
        if not n_confirm:
            return 0
        extra = {"simple": self.simplify_reserve, "cheap": 1}.get(prefer, 0)
        return (1 + self.finalists + extra) * n_confirm


def split_val(strategy, valset: pd.DataFrame, seed: int, by_label: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the search's part of val, the part held back to confirm the finalists): `confirm` of the decision's settings,
    stratified by label when there are labels; nothing held back with confirm 0 (the best search score ships)."""
    share = strategy.decision.confirm
    return holdout_split(valset, share, seed, by_label) if share else (valset, valset.iloc[:0])


# --- the decision ---------------------------------------------------------------------------------------

def decide(ctx: OptimizeContext, pool: Pool, strategy) -> Generator[Step, None, Cand]:
    """Choose what ships (see the module's docstring); returns it. `strategy` supplies finalists, confidence,
    harm_margin, simplify_margin and decide_on_unseen."""
    level, margin = strategy.confidence, strategy.harm_margin
    reference, chosen = reference_and_finalists(pool, strategy.finalists)
    ctx.reserved = 0
    if not chosen:
        yield _baseline_kept(reference, level, "No candidate scored above the baseline in the search, so the "
                                               "result is the baseline.")
        return reference
    simplifying = ctx.prefer == "simple"
    examples, from_train = decision_set(ctx, pool, 1 + len(chosen) + (strategy.simplify_reserve if simplifying else 0),
                                        strategy.decide_on_unseen)
    more = second_look_rows(ctx, pool, examples, 1 + len(chosen)) if strategy.second_look else examples.iloc[:0]
    level = 1 - (1 - level) / (2 if len(more) else 1)  # each of two looks at half the level: the bound holds over both
    results = yield from score_on(ctx, [reference, *chosen], examples)
    unpaid = _unpaid_confirmation(reference, chosen[0], results)
    if unpaid:
        yield _baseline_kept(reference, level, unpaid)
        return reference
    passed, first = _fixed_sequence(ctx, reference, chosen, results, level, margin)
    looks = 1
    if len(more) and not passed and first is not None and first[1].diff > 0:
        # the first look failed while the leader leads: the rows the simplification would have used decide again
        extra = yield from score_on(ctx, [reference, *chosen], more)
        if all(c.id in extra for c in (reference, chosen[0])):
            looks, results = 2, _joined(results, extra)
            examples, from_train = pd.concat([examples, more]), from_train + len(more)
            for c in (reference, *chosen):
                if c.id in results:
                    c.confirm = results[c.id].score
            passed, first = _fixed_sequence(ctx, reference, chosen, results, level, margin)
    where = _where(len(examples), from_train) + (" after a second look" if looks == 2 else "")
    winner, cmp, reading = _verdict(reference, passed, first, where, level, margin)
    if passed and ctx.prefer == "cheap":  # runs stored before the simplification
        cheap = yield from _cheapest_within_noise(ctx, pool, reference, winner, results, level)
        if cheap is not None:
            winner, cmp, note = cheap
            reading = (reading.removesuffix(", so it replaces the baseline.")
                       + f". {note}, so candidate #{winner.id}, the cheaper, replaces the baseline.")
    if winner is reference:
        reading += _baseline_over_ceiling(ctx, reference)
    shown = winner if winner is not reference else first[0]
    yield WinnerChosen(winner.id, reference.id, winner is not reference, _f(cmp.diff), (_f(cmp.ci_low), _f(cmp.ci_high)),
                       cmp.p_value, level, len(examples), _f(shown.val), _f(shown.confirm), reading,
                       leader_id=first[0].id, margin=margin, n_from_train=from_train, looks=looks)
    if winner is not reference and simplifying:
        winner = yield from simplify(ctx, pool, reference, winner, results, examples, strategy, level)
    return winner


def second_look_rows(ctx: OptimizeContext, pool: Pool, first: pd.DataFrame, prompts: int) -> pd.DataFrame:
    """The unseen train rows a second look would add to the decision's `first` examples: those not among them, as many
    as the budget left after the first look (`prompts` prompts scored on `first`) pays for, kept to val's label mix;
    none when they would add fewer than a third of the first look's examples (too few to be worth halving the level
    of the first). Known before the first look's answers, so the choice of one or two looks cannot bias the test."""
    if ctx.budget.max_target_requests is None:
        return first.iloc[:0]  # no budget: the first look already read every unseen row
    more = _unseen_sample(ctx, pool, first, prompts, ctx.seed + 1, taken=first)
    return more if 3 * len(more) >= len(first) else first.iloc[:0]


def _unseen_sample(ctx: OptimizeContext, pool: Pool, scored: pd.DataFrame, prompts: int, seed: int,
                   taken: pd.DataFrame | None = None) -> pd.DataFrame:
    """Unseen train rows (`_fresh_rows`, less `taken`) kept to val's label mix: as many as the budget left pays for
    once `prompts` prompts are scored on `scored` and on each of them (all of them without a budget)."""
    cap = None
    if ctx.budget.max_target_requests is not None:
        room = ctx.budget.max_target_requests - ctx.counters.target_requests - prompts * len(scored)
        cap = max(0, room // max(1, prompts))
    return proportional_subset(_fresh_rows(ctx, pool, taken), pd.concat([ctx.valset, ctx.confirmset]), cap, seed=seed,
                               by_label=ctx.dataset.has_labels)


def _joined(first: dict, second: dict) -> dict:
    """Each candidate's answers on both looks' examples, as one EvalResult (those scored on both)."""
    return {cid: replace(res, rows=pd.concat([res.rows, second[cid].rows], ignore_index=True))
            for cid, res in first.items() if cid in second}


def reference_and_finalists(pool: Pool, finalists: int) -> tuple[Cand, list[Cand]]:
    """(the best start by search score (the first evaluated candidate when there is none), the best `finalists`
    other candidates whose search score beats it, best first)."""
    starts = [c for c in pool.evaluated if c.round == 0 and c.proposer == "baseline"] or pool.evaluated[:1]
    reference = max(starts, key=lambda c: (rank_score(c), -c.id))
    chosen = [c for c in pool.top(len(pool.cands)) if c.proposer != "baseline" and rank_score(c) > rank_score(reference)]
    return reference, chosen[:finalists]


def decision_set(ctx: OptimizeContext, pool: Pool, prompts: int, unseen: bool) -> tuple[pd.DataFrame, int]:
    """(the examples the decision is made on, how many of them are train rows): the held-back val examples, and with
    `unseen` the train rows no search step read or showed and no candidate carries as a demo, kept to val's label mix,
    as many as the budget left pays for with `prompts` prompts scored on each."""
    held = ctx.confirmset
    if not unseen:
        return held, 0
    extra = _unseen_sample(ctx, pool, held, prompts, ctx.seed)
    return pd.concat([held, extra]), len(extra)


def _fresh_rows(ctx: OptimizeContext, pool: Pool, taken: pd.DataFrame | None = None) -> pd.DataFrame:
    """The train rows no search step read or showed and no candidate carries as a demo (nor any of `taken`), checked by
    row and by input text (a duplicate of a shown or demo input would answer itself, or reuse a search call)."""
    demos = [d for c in pool.cands for d in c.template.demos]
    used = set(ctx.seen) | {d.idx for d in demos}
    texts = set(ctx.trainset.loc[ctx.trainset["idx"].isin(used), "text"]) | {d.text for d in demos}
    if taken is not None:
        used |= set(taken["idx"])
        texts |= set(taken["text"])
    rows = ctx.demo_rows
    return rows[~rows["idx"].isin(used) & ~rows["text"].isin(texts)]


def score_on(ctx: OptimizeContext, cands: list[Cand], examples: pd.DataFrame) -> Generator[Confirmed, None, dict]:
    """Score the candidates in order on the decision's examples, each recording its score there, until the budget runs
    out. Returns {candidate id: its EvalResult} for those scored."""
    results = {}
    for c in cands:
        try:
            res = ctx.score(c.template, examples)
        except BudgetExhausted:
            break
        results[c.id] = res
        c.confirm = res.score
        lo, hi = res.ci
        yield Confirmed(c.id, _f(res.score), (_f(lo), _f(hi)), res.n, _f(c.val))
    return results


def _fixed_sequence(ctx: OptimizeContext, reference: Cand, chosen: list[Cand], results: dict, level: float,
                    margin: float):
    """The finalists' one-sided paired tests against the reference, in order, stopping at the first that fails (or was
    not scored). Returns (the (cand, comparison) pairs that passed, the first finalist's pair, or None when it was not
    scored)."""
    passed, first = [], None
    for c in chosen:
        if c.id not in results:
            break
        cmp = S.harm_compare(ctx.metric, results[reference.id].rows, results[c.id].rows, margin, level, seed=ctx.seed)
        first = first or (c, cmp)
        if not cmp.significant:
            break
        passed.append((c, cmp))
    return passed, first


def _where(n: int, from_train: int) -> str:
    """'the 84 held-back val examples', or with train rows: 'the 96 held-back examples (84 of val and 12 train rows
    no search step read)'."""
    if not from_train:
        return f"the {n} held-back val examples"
    return f"the {n} held-back examples ({n - from_train} of val and {from_train} train rows no search step read)"


def _verdict(reference: Cand, passed: list, first: tuple, where: str, level: float, margin: float):
    """(the winner, its comparison with the reference, the sentence saying why): of the finalists that passed, the
    best on the held-back examples; when none did, the reference, read against the first finalist's test."""
    pct = S.level_text(level)
    if passed:
        winner, cmp = max(passed, key=lambda cc: (_f(cc[0].confirm) or -np.inf, -cc[0].id))
        if margin <= 0:
            return winner, cmp, (f"Candidate #{winner.id} beats the baseline on {where} by {cmp.diff:+.3f} ({pct} CI "
                                 f"[{cmp.ci_low:+.3f}, {cmp.ci_high:+.3f}]" + _p_text(cmp) + "), so it replaces the baseline.")
        return winner, cmp, (f"Candidate #{winner.id} scores {cmp.diff:+.3f} over the baseline ({pct} CI "
                             f"[{cmp.ci_low:+.3f}, {cmp.ci_high:+.3f}]) on {where}, and the paired test shows it is not "
                             f"worse by {margin:g} or more" + _p_text(cmp) + ", so it replaces the baseline.")
    best, cmp = first
    if margin <= 0:
        return reference, cmp, (f"No candidate beat the baseline beyond noise on {where} (the first finalist, "
                                f"#{best.id}, by {cmp.diff:+.3f}, {pct} CI [{cmp.ci_low:+.3f}, {cmp.ci_high:+.3f}]"
                                + _p_text(cmp) + f", not below {1 - level:.2g}), so the result is the baseline.")
    why = ("it did not score higher" if not cmp.diff > 0 else
           f"the test cannot rule out that it is worse by {margin:g} or more" + _p_text(cmp) + f", not below {1 - level:.2g}")
    return reference, cmp, (f"The search's leader, #{best.id}, scores {cmp.diff:+.3f} against the baseline ({pct} CI "
                            f"[{cmp.ci_low:+.3f}, {cmp.ci_high:+.3f}]) on {where}, but {why}, so the result is the "
                            "baseline.")


def _p_text(cmp) -> str:
    """', one-sided p = …' for a comparison with a p-value, else nothing."""
    return f", one-sided p = {cmp.p_value:.3g}" if cmp.p_value is not None else ""


def _baseline_kept(reference: Cand, level: float, reading: str) -> WinnerChosen:
    """The step saying the baseline stays the result before any finalist was compared with it."""
    return WinnerChosen(reference.id, reference.id, False, None, None, None, level, 0, _f(reference.val), None, reading)


def _unpaid_confirmation(reference: Cand, first: Cand, results: dict) -> str | None:
    """Why the baseline stays the result when the budget ran out before the first finalist could be compared with
    it (the baseline, or the first finalist, was not scored on the held-back examples), else None."""
    if reference.id not in results:
        return "The budget left nothing to confirm a candidate with, so the result is the baseline."
    if first.id not in results:
        return (f"The budget paid for confirming the baseline but could not pay for confirming finalist #{first.id} "
                "on the held-back examples, so the result is the baseline.")
    return None


def _baseline_over_ceiling(ctx: OptimizeContext, reference: Cand) -> str:
    """A sentence to add when the baseline that stays the result itself breaks the cost ceilings, else nothing."""
    if not ctx.ceilings or reference.rows is None:
        return ""
    over = broken(cost_of_calls(ctx.store, reference.rows["call_key"]), ctx.ceilings)
    return f" The baseline itself breaks the cost ceiling ({'; '.join(over)}): no candidate within it beat it." if over else ""


# --- the simplification ------------------------------------------------------------------------------------

def simplify(ctx: OptimizeContext, pool: Pool, start: Cand, result: Cand, results: dict, examples: pd.DataFrame,
             strategy, level: float | None = None) -> Generator[Step, None, Cand]:
    """Try the result's parts away (SIMPLIFICATIONS, each on top of the last kept) and return the simplest variant that
    passes (see the module's docstring). Each variant tried is a candidate of the pool, scored on the decision's
    examples, and one Simplified step says how it did."""
    current = result
    for change in SIMPLIFICATIONS:
        cand = yield from _variant_candidate(ctx, pool, change, current, start, strategy.simplify_margin)
        if cand is None or cand.id in (current.id, start.id):
            continue
        if cand.id not in results:
            scored = yield from score_on(ctx, [cand], examples)
            if cand.id not in scored:
                yield Simplified(cand.id, current.id, change, False, 0, reading=(
                    f"The budget left no calls to try {change} (#{cand.id}) on the held-back examples, so the result "
                    f"stays #{current.id}."))
                break
            results.update(scored)
        step = _judge_variant(ctx, cand, current, start, result, results, change, strategy, level)
        yield step
        if step.accepted:
            current = cand
        elif not step.vs_start.get("passed"):
            break  # the tests against the start are a fixed sequence: none after the first that fails
    return current


def _variant_candidate(ctx: OptimizeContext, pool: Pool, change: str, current: Cand, start: Cand,
                       margin: float) -> Generator[Step, None, Cand | None]:
    """The pool's candidate for one simplification of `current` (added when new), or None where it does not apply."""
    if change == "cheaper contender":
        return cheaper_contender(ctx, pool, current, start, margin)
    template = variant(change, current.template, start.template, ctx)
    if template is None or template.id == current.template.id:
        return None
    cand = pool.find(template)
    if cand is None:
        cand, step = pool.add(pool.last_round, template, f"simplify/{change}", "simplify", parents=(current.id,))
        yield step
    return cand


def variant(change: str, template: PromptTemplate, start: PromptTemplate, ctx: OptimizeContext) -> PromptTemplate | None:
    """The prompt with one part simplified, or None where the change does not apply."""
    if not template.demos:
        return None
    if change == "fixed demos":
        if not template.similar_k:
            return None
        return template.with_demos(typical_demos(template, ctx), template.demo_format)
    if change == "start's instruction":
        if (template.system, template.user) == (start.system, start.user):
            return None
        return PromptTemplate(start.system, start.user).with_demos(template.demos, template.demo_format,
                                                                   template.similar_k, template.similar_by)
    if change == "fewer demos":
        if template.similar_k:
            k = template.similar_k // 2
            return template.with_demos(template.demos, template.demo_format, k, template.similar_by) if k >= 1 else None
        fewer = _one_per_label(template.demos)
        if len(fewer) >= len(template.demos):
            fewer = template.demos[: len(template.demos) // 2]
        return template.with_demos(fewer, template.demo_format) if fewer else None
    raise ValueError(f"unknown simplification {change!r}")


def cheaper_contender(ctx: OptimizeContext, pool: Pool, current: Cand, start: Cand, margin: float
                      ) -> Cand | None:
    """The cheapest candidate per call (median latency, then prompt tokens, measured on its own calls) that costs
    clearly less than `current`, beat the start on the search examples both were read on, and scored no more than
    `margin` below `current` on the examples both were read on. A candidate the race stopped early counts: the race
    drops a clone of the leader at its first rung (it cannot beat it), and a cheaper clone is what is looked for."""
    if current.rows is None or start.rows is None:
        return None
    mine = cost_of_calls(ctx.store, current.rows["call_key"])
    rivals = []
    for c in pool.cands:
        if c is current or c.rows is None or c.discarded or c.over_ceiling or c.round == 0 or c.proposer == "baseline":
            continue
        vs_current = S.compare(ctx.metric, current.rows, c.rows, seed=ctx.seed)
        vs_start = S.compare(ctx.metric, start.rows, c.rows, seed=ctx.seed)
        if not vs_current.n or not vs_current.diff >= -margin or not vs_start.diff > 0:
            continue
        theirs = cost_of_calls(ctx.store, c.rows["call_key"])
        if costs_no_more(theirs, mine) and _cheaper(theirs, mine):
            rivals.append((theirs.latency_s or 0.0, theirs.prompt_tokens or 0.0, c.id, c))
    return min(rivals)[-1] if rivals else None


# Latency differences below this many seconds per call are noise, not cost: a local call's latency varies by more
# than that between runs, and a scripted model's is all noise (a killed run resumed must choose as it would have).
LATENCY_SLACK_S = 0.05


def _cheaper(a: Cost, b: Cost) -> bool:
    """Whether `a` costs clearly less per call than `b`: 10% fewer prompt tokens, or 10% (and LATENCY_SLACK_S) less
    median latency."""
    fewer = a.prompt_tokens is not None and b.prompt_tokens and a.prompt_tokens < 0.9 * b.prompt_tokens
    faster = (a.latency_s is not None and b.latency_s is not None
              and a.latency_s < 0.9 * b.latency_s and b.latency_s - a.latency_s > LATENCY_SLACK_S)
    return bool(fewer or faster)


def typical_demos(template: PromptTemplate, ctx: OptimizeContext) -> tuple:
    """Fixed demos standing in for a pool's per-input ones: the pool demos most often among the nearest of the train
    inputs (each leaving itself out), taken round-robin over the labels so each label is shown, similar_k of them.
    Read from train inputs only, so no val or test example has a say in which demos ship."""
    counts = {i: 0 for i in range(len(template.demos))}
    index = {id(d): i for i, d in enumerate(template.demos)}
    for text in ctx.trainset["text"]:
        for d in template.demos_for(text):
            counts[index[id(d)]] += 1
    ranked = sorted(counts, key=lambda i: (-counts[i], i))
    by_label: dict[str, list[int]] = {}
    for i in ranked:
        by_label.setdefault(template.demos[i].label, []).append(i)
    order = sorted(by_label, key=lambda lab: ranked.index(by_label[lab][0]))
    picked: list[int] = []
    while len(picked) < template.similar_k and any(by_label.values()):
        for lab in order:
            if by_label[lab] and len(picked) < template.similar_k:
                picked.append(by_label[lab].pop(0))
    return tuple(template.demos[i] for i in picked)


def _one_per_label(demos) -> tuple:
    seen, out = set(), []
    for d in demos:
        if d.label not in seen:
            seen.add(d.label)
            out.append(d)
    return tuple(out)


def _judge_variant(ctx: OptimizeContext, cand: Cand, current: Cand, start: Cand, result: Cand, results: dict,
                   change: str, strategy, level: float | None = None) -> Simplified:
    """The Simplified step of one variant: its tests against the start (the decision's rule, at the level of the look
    that decided) and against the decided result (non-inferiority), and its cost per call against the prompt it
    simplifies."""
    level = level or strategy.confidence
    vs_start = S.harm_compare(ctx.metric, results[start.id].rows, results[cand.id].rows, strategy.harm_margin, level,
                              seed=ctx.seed)
    vs_result = S.harm_compare(ctx.metric, results[result.id].rows, results[cand.id].rows, strategy.simplify_margin,
                               level, seed=ctx.seed)
    mine, theirs = (cost_of_calls(ctx.store, results[c.id].rows["call_key"]) for c in (cand, current))
    cheaper = costs_no_more(mine, theirs)
    accepted = vs_start.significant and vs_result.noninferior and cheaper
    return Simplified(cand.id, current.id, change, accepted, vs_result.n,
                      vs_start=_cmp_record(vs_start) | {"passed": vs_start.significant},
                      vs_result=_cmp_record(vs_result) | {"passed": vs_result.noninferior},
                      cost={"variant": mine.to_record(), "current": theirs.to_record()},
                      reading=_variant_reading(cand, current, result, change, vs_start, vs_result, mine, theirs,
                                               accepted, cheaper, level))


def costs_no_more(mine: Cost, theirs: Cost) -> bool:
    """Whether a variant costs no more per call than the prompt it simplifies: prompt tokens at most 10% more, and
    median latency at most 10% (or LATENCY_SLACK_S) more (latency is measured, so it carries a little noise)."""
    def within(a, b, slack=0.0):
        return a is None or b is None or a <= max(1.1 * b, b + slack) + 1e-9
    return within(mine.prompt_tokens, theirs.prompt_tokens) and within(mine.latency_s, theirs.latency_s, LATENCY_SLACK_S)


def _cmp_record(cmp) -> dict:
    return {"diff": _f(cmp.diff), "ci": [_f(cmp.ci_low), _f(cmp.ci_high)], "p": _f(cmp.p_value), "margin": cmp.margin}


def _variant_reading(cand, current, result, change, vs_start, vs_result, mine: Cost, theirs: Cost, accepted: bool,
                     cheaper: bool, level: float) -> str:
    """One sentence: what was tried, how it compared, and whether it ships."""
    pct = S.level_text(level)
    head = (f"{change[0].upper() + change[1:]} (#{cand.id}): {vs_result.diff:+.3f} against #{result.id} on the same "
            f"{vs_result.n} examples ({pct} CI [{vs_result.ci_low:+.3f}, {vs_result.ci_high:+.3f}]), "
            f"{vs_start.diff:+.3f} against the baseline; {_cost_words(mine)} per call against {_cost_words(theirs)}")
    if accepted:
        return head + f". No worse than #{result.id} by {vs_result.margin:g} or more and cheaper, so it replaces #{current.id}."
    if not vs_start.significant:
        why = "it does not beat the baseline as the decision requires"
    elif not vs_result.noninferior:
        why = f"the test cannot rule out that it is worse than #{result.id} by {vs_result.margin:g} or more"
    else:
        why = "it costs more per call"
    return head + f". Not kept: {why}."


def _cost_words(c: Cost) -> str:
    tokens = "?" if c.prompt_tokens is None else f"{c.prompt_tokens:.0f} tokens"
    return tokens + ("" if c.latency_s is None else f", {c.latency_s:.2f} s")


# --- the finale ---------------------------------------------------------------------------------------------

def finalize(ctx: OptimizeContext, pool: Pool, test_top: int, winner: Cand | None = None,
             parts: bool = False) -> Iterator[Step]:
    """Held-out test: the result, the search's leader and the top few by val, every baseline, and with `parts` the
    result's parts (ResultParts). Outside the search budget."""
    best = winner or pool.best()
    finalists = {c.id: c for c in pool.top(test_top)}
    finalists.update({c.id: c for c in pool.evaluated if c.proposer == "baseline"})
    if best is not None:
        finalists[best.id] = best
    for cand in sorted(finalists.values(), key=lambda c: c.id):
        yield _test_scored(ctx, cand)
    if parts and best is not None:
        yield from _parts(ctx, pool, best, finalists)


def _parts(ctx: OptimizeContext, pool: Pool, result: Cand, scored: dict) -> Iterator[Step]:
    """The result's parts as candidates scored on test (a result with demos: its instruction alone, and the start's
    instruction with its demos where it differs from the result's), then the ResultParts step naming them. Nothing when
    the result is the start."""
    start, _ = reference_and_finalists(pool, 0)
    if result.id == start.id:
        return
    t = result.template
    wanted = {}
    if t.demos:
        wanted["instruction_alone"] = PromptTemplate(t.system, t.user)
    if t.demos and (t.system, t.user) != (start.template.system, start.template.user):
        wanted["start_with_demos"] = PromptTemplate(start.template.system, start.template.user).with_demos(
            t.demos, t.demo_format, t.similar_k, t.similar_by)
    ids = {}
    for role, template in wanted.items():
        cand = pool.find(template)
        if cand is None:
            cand, step = pool.add(pool.last_round, template, f"part/{role.replace('_', ' ')}", "part",
                                  parents=(result.id,))
            yield step
        if cand.id not in scored:
            scored[cand.id] = cand
            yield _test_scored(ctx, cand)
        ids[role] = cand.id
    yield ResultParts(result.id, start.id, **ids)


def _test_scored(ctx: OptimizeContext, cand: Cand) -> TestScored:
    res = ctx.score(cand.template, ctx.testset, budgeted=False)
    return TestScored(cand.id, _f(res.score), ci_of(res), res.n)


# --- legacy: prefer "cheap" (runs stored before the simplification) ------------------------------------------

def _cheapest_within_noise(ctx: OptimizeContext, pool: Pool, reference: Cand, best: Cand, results: dict,
                           level: float):
    """With prefer "cheap": the candidate with the fewest prompt tokens per call among those the search could
    not tell from the confirmed best (paired, on the search examples), if it also beats the baseline on the
    held-back examples and they cannot tell it from the best either. Returns (cand, its comparison with the
    baseline, a sentence saying how it was decided) or None (the best stays the result)."""
    measured: dict[int, float] = {}

    def tokens(c: Cand) -> float:  # read from the stored calls once per candidate
        if c.id not in measured:
            t = cost_of_calls(ctx.store, c.rows["call_key"]).prompt_tokens if c.rows is not None else None
            measured[c.id] = np.inf if t is None else t
        return measured[c.id]

    best_tokens = tokens(best)
    rivals = []
    for c in pool.evaluated:
        if c is best or c.proposer == "baseline" or c.rows is None or rank_score(c) <= rank_score(reference):
            continue
        if len(c.rows) != len(best.rows) or S.compare(ctx.metric, c.rows, best.rows, level, seed=ctx.seed).significant:
            continue  # not read on the same examples, or the search already told the best apart from it
        if tokens(c) < best_tokens:
            rivals.append(c)
    if not rivals:
        return None
    cheap = min(rivals, key=lambda c: (tokens(c), -rank_score(c), c.id))
    if cheap.id not in results:
        scored = yield from score_on(ctx, [cheap], ctx.confirmset)
        if cheap.id not in scored:
            return None
        results.update(scored)
    res = results[cheap.id]
    vs_base = S.compare(ctx.metric, results[reference.id].rows, res.rows, level, seed=ctx.seed)
    vs_best = S.compare(ctx.metric, res.rows, results[best.id].rows, level, seed=ctx.seed)
    if not vs_base.significant or vs_best.significant:
        return None
    note = (f"Candidate #{cheap.id} costs {tokens(cheap):.0f} prompt tokens per call against #{best.id}'s "
            f"{best_tokens:.0f}, and the held-back examples cannot tell it from #{best.id} ({vs_best.diff:+.3f} "
            f"for #{best.id}, {level:.0%} CI [{vs_best.ci_low:+.3f}, {vs_best.ci_high:+.3f}]) while it beats the "
            f"baseline by {vs_base.diff:+.3f}")
    return cheap, vs_base, note

