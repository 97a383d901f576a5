"""Which confirmation to ship with: the design whose shipped results gain the most on average, among those that keep
the harm bound, by simulation and on the shared tasks' real answers.

    python benchmarks/confirm_bench.py                              # simulation and exact tables only (seconds)
    python benchmarks/confirm_bench.py --real A.duckdb,B.duckdb     # and resampling of benchmark runs' test answers
    python benchmarks/confirm_bench.py --real-summaries             # the same from ship_bench's summaries (ship_runs/)
    python benchmarks/confirm_bench.py --val-sizes 140,100 --reps 4000 --shares 0.3,0.4,0.5,0.6,0.7 --finalists 1,2

A search holds back a share of val (n_confirm = round(n_val * share); the search sees the other n_search). At the
end its finalists (the best 1 or 2 by search score, only those that beat the start there) are scored on the held-back
examples with the start and tested one-sided and paired, in search order at the full level, stopping at the first
that fails; of those that pass, the best on the held-back examples replaces the start. A finalist passes when it
scored higher than the start there (observed difference > 0) and its rule's test rejects at 5%:

- "sign": the exact sign test (McNemar) of "not better" (margin 0), the rule before;
- "harm 0.02": Tango's exact unconditional test of "worse than the start by 0.02 or more" (`stats.harm_table`). It
  bounds the harm that matters: a prompt truly worse by 0.02 or more ships in at most 5% of searches, while
  shipping an equally good prompt does no harm;
- "harm 0.02, 2 looks" (and "(n2 = 0.5 n1)", --two-looks): the same test with a second look, as
  `promptlab.optimize.confirmation.decide` takes it when the budget held back for the simplification could pay for
  more unseen train rows (known before the first look): each look tests at half the level (2.5%, Bonferroni); when
  no finalist passes the first look on the n1 held-back examples and the first finalist scored higher than the start
  there, the finalists and the start are scored on n2 fresh examples (n2 = n1, or n1 / 2) and the sequence is tested
  again on all n1 + n2. The second look's examples are not counted against the design (in the product they are the
  rows the simplification would have used).

A design is a rule, a share held back and a number of finalists. The chosen design maximizes the mean true gain of
what ships (0 when the start stays), averaged over the scenarios "one +0.10" and "one +0.05" and both
discordances, among the designs whose harm rate is <= 0.05 in every scenario, at each val size; the default is a
design best or within 0.002 of best at every val size (of several, the fewest finalists, then the highest total).
Measured per design, scenario, discordance and val size:

- harm rate: P(a candidate truly worse than the start by 0.02 or more ships);
- false ship: P(a candidate not truly better ships), the measure before;
- power: P(a candidate truly better by +0.10 ships) ("—" where the scenario has none);
- mean true gain of what ships, per search;
- second look: P(the second look is taken) (two-look rules).

Simulation: per replicate, a start's answers on val (140 examples: a 400-row file under the default 30/35/35 split;
100: DSPy's 50/100/200 split; --val-sizes) and K candidates' answers that differ from the start's on a share
`discordance` of the examples, with true gains as the scenario says; racing is not modelled (every candidate reads
all of the search part), which makes the search's pick as good as it can be. Every design reads the same replicates
(common random numbers), so the differences between designs are not noise between draws; a second look's fresh
examples come from a stream of their own, so adding two-look designs leaves the others' figures as they were.

Exact (no simulation): the chance that one test passes a finalist truly at -0.02, at every n_confirm (and 50, 70,
80: the real runs' n ~ 80), the chance that the two-look rule ships it at look 1 or look 2 (the first look's
outcomes that lead without passing, convolved with the second's), at the same n1, and the
simplification step's acceptance rate: a variant V of the shipped result W is accepted when Tango's test of "V worse
than W by m or more" rejects at 5%, whatever the sign of the observed difference, against "cannot tell them apart"
(a two-sided sign test that does not reject).

Real pairs (--real): pairs (a run's start and a candidate) scored on the same test examples in benchmark runs; their
answers are the population, and confirmation sets of n_confirm examples are drawn from them (the confirmation
alone: one finalist, no search; a second look draws its n2 examples from them too): per val size, rule and share,
the harm rate over pairs whose test gain is <= -0.02, the ship rate over pairs better by >= 0.10, and the mean test
gain shipped over all pairs, and per pair its test gain and ship rate at the default design's share. Stores that do
not exist (yet) are skipped with a one-line message. --real-summaries takes the pairs from ship_bench's committed
summaries instead of (or besides) stores: benchmarks/ship_runs/<target>/<task>__<start>.json (files or folders,
comma-separated; default: every summary there), each run's (start, leader) test answers, skipped where the leader's
answers are the start's.

Writes the "confirmation" section of benchmarks/RESULTS.md and benchmarks/confirm_results.json.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import gammaln, xlogy
from scipy.stats import binom

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine, write_section  # noqa: E402
from promptlab.scoring.stats import harm_table  # noqa: E402

OUT_JSON = ROOT / "benchmarks" / "confirm_results.json"
SHIP_RUNS = ROOT / "benchmarks" / "ship_runs"  # ship_bench's per-run summaries: <target>/<task>__<start>.json
HARM = 0.02  # the harm margin: truly worse than the start by this much or more is harm
EPS = 1e-9  # true gains are set from decimals: compare with a tolerance
OLD_DEFAULT = ("sign", 0.6, 1)
GOAL_SCENARIOS = ("one +0.10", "one +0.05")  # where the mean true gain shipped chooses the design
WITHIN = 0.002  # a design this close to the best mean gain at every val size counts as best
EXACT_N = (50, 70, 80)  # n_confirm of the exact tables besides the simulated ones (the real runs' first look: ~80)


def rule_margin(rule: str) -> float:
    return 0.0 if rule == "sign" else float(rule.split(",")[0].split()[1])


def two_look_rule(second: float) -> str:
    """The name of the harm rule with a second look of n2 = second * n1 examples."""
    return f"harm {HARM:g}, 2 looks" + ("" if second == 1 else f" (n2 = {second:g} n1)")


def second_share(rule: str) -> float:
    """n2 / n1 of the rule's second look; 0 for a rule of one look."""
    if "2 looks" not in rule:
        return 0.0
    return float(rule.split("n2 = ")[1].split()[0]) if "n2 = " in rule else 1.0


def rule_key(rule: str) -> tuple[float, float]:
    return rule_margin(rule), second_share(rule)


@lru_cache(maxsize=None)
def p_table(n: int, margin: float) -> np.ndarray:
    """p[wins, losses] of the rule's one-sided test for every outcome of n paired examples, so the simulation looks
    p-values up instead of testing replicate by replicate. margin 0: the exact sign test, P(X >= wins) for
    X ~ Bin(wins + losses, 1/2), what `stats.harm_p` computes at margin 0."""
    if margin > 0:
        return np.nan_to_num(harm_table(n, round(float(margin), 6)), nan=1.0)
    w, l = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    return np.where(w + l > 0, binom.sf(w - 1, w + l, 0.5), 1.0)


def trinomial(n: int, p_win: float, p_loss: float) -> np.ndarray:
    """P[wins, losses] of n paired examples where only the candidate is right with probability p_win and only the
    reference with p_loss (0 where wins + losses > n): the exact tables need no simulation."""
    w, l = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    rest = n - w - l
    ok = rest >= 0
    rest = np.where(ok, rest, 0)
    logp = (gammaln(n + 1) - gammaln(w + 1) - gammaln(l + 1) - gammaln(rest + 1)
            + xlogy(w, p_win) + xlogy(l, p_loss) + xlogy(rest, 1 - p_win - p_loss))
    return np.where(ok, np.exp(logp), 0.0)


def candidate_answers(rng, base: np.ndarray, gains: np.ndarray, discordance: float) -> np.ndarray:
    """Correctness (R, K, n) of K candidates whose answers differ from the start's (R, n) on about a share
    `discordance` of the examples, with a true gain `gains` (K,): a wrong start answer is made right with
    probability (d + g) / 2 / P(wrong), a right one wrong with (d - g) / 2 / P(right)."""
    p = base.mean()
    up = np.clip((discordance + gains) / 2 / max(1 - p, 1e-9), 0, 1)[None, :, None]
    down = np.clip((discordance - gains) / 2 / max(p, 1e-9), 0, 1)[None, :, None]
    u = rng.random((base.shape[0], len(gains), base.shape[1]))
    b = base[:, None, :]
    return np.where(b == 1, (u >= down).astype(np.int8), (u < up).astype(np.int8))


def _worse_or_equal(k: int) -> np.ndarray:
    return -np.abs(np.linspace(0.0, 0.12, k))


SCENARIOS = {
    # every candidate exactly as good as the start but answering differently: the least favourable for "false ship"
    "null": lambda k: np.zeros(k),
    # every candidate truly worse by exactly the margin: the least favourable for the harm bound
    "at the harm margin": lambda k: np.full(k, -HARM),
    # what searches mostly produce: candidates a little worse, some as good
    "worse or equal": _worse_or_equal,
    # one candidate truly +0.10 (or +0.05), the rest as in "worse or equal": the search has to find it
    "one +0.10": lambda k: np.concatenate([[0.10], _worse_or_equal(k - 1)]),
    "one +0.05": lambda k: np.concatenate([[0.05], _worse_or_equal(k - 1)]),
    # the confirmation alone: the one finalist is truly +0.10
    "+0.10 alone": lambda k: np.array([0.10]),
}


def shipped(search, wins, losses, conf_gain, order, table, finalists: int, alpha: float) -> np.ndarray:
    """Index (R,) of the candidate that replaces the start in each replicate, -1 where the start stays. Finalists in
    search order, each tested only if it beat the start on the search part and the one before it passed (a fixed
    sequence at the full level keeps the chance of any wrong ship at the level); the best on the held-back part
    of those that pass ships."""
    rows = np.arange(len(order))
    out = np.full(len(order), -1)
    best_gain = np.full(len(order), -np.inf)
    going = np.ones(len(order), dtype=bool)
    for j in range(min(finalists, order.shape[1])):
        k = order[:, j]
        g = conf_gain[rows, k]
        ok = going & (search[rows, k] > 0) & (g > 0) & (table[wins[rows, k], losses[rows, k]] < alpha)
        better = ok & (g > best_gain)  # ties keep the earlier finalist
        out = np.where(better, k, out)
        best_gain = np.where(better, g, best_gain)
        going = ok
    return out


def decision(search, order, first: tuple, second: tuple | None, rule: str, finalists: int, alpha: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """(the index (R,) of the candidate that ships under the rule, -1 where the start stays; where the second look was
    taken (R,)). `first`, `second`: (n, wins (R, K), losses (R, K)) of every candidate on the first look's examples
    and on the second look's fresh ones (None: one look). With two looks each tests at alpha / 2 (Bonferroni, as
    `confirmation.decide`): when no finalist passes the first and the first finalist scored higher than the start
    there, the sequence is tested again on all n1 + n2 examples."""
    margin = rule_margin(rule)
    alpha /= 2 if second else 1
    n, wins, losses = first
    ship = shipped(search, wins, losses, (wins - losses) / n, order, p_table(n, margin), finalists, alpha)
    if second is None:
        return ship, np.zeros(len(ship), dtype=bool)
    rows, lead = np.arange(len(order)), order[:, 0]
    again = (ship < 0) & (search[rows, lead] > 0) & (wins[rows, lead] > losses[rows, lead])
    n, wins, losses = n + second[0], wins + second[1], losses + second[2]
    ship2 = shipped(search, wins, losses, (wins - losses) / n, order, p_table(n, margin), finalists, alpha)
    return np.where(again, ship2, ship), again


def _wins_losses(cand: np.ndarray, base: np.ndarray, lo: int, hi: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(n, wins, losses (R, K)) of the candidates against the start on the examples lo:hi."""
    diff = cand[:, :, lo:hi] - base[:, None, lo:hi]
    return hi - lo, (diff > 0).sum(axis=2), (diff < 0).sum(axis=2)


def _chunk_ships(rng, base, cand, n_val: int, designs, alpha) -> dict:
    """(shipped index, second look taken) per replicate of one chunk, for every design (rule, share, finalists) on
    the same answers: the first n_val columns are val, the rest the second look's fresh examples."""
    out, seconds = {}, {}
    for share in sorted({s for _, s, _ in designs}):
        n_conf = int(round(n_val * share))
        n_search = n_val - n_conf
        search = cand[:, :, :n_search].mean(axis=2) - base[:, None, :n_search].mean(axis=2)
        # finalists: the best few by search score (ties at random)
        order = np.argsort(-(search + rng.random(search.shape) * 1e-6), axis=1)[:, :max(f for *_, f in designs)]
        first = _wins_losses(cand, base, n_search, n_val)
        for rule, s, f in designs:
            if s == share:
                n2 = int(round(n_conf * second_share(rule)))
                if n2 and n2 not in seconds:
                    seconds[n2] = _wins_losses(cand, base, n_val, n_val + n2)
                out[(rule, s, f)] = decision(search, order, first, seconds.get(n2), rule, f, alpha)
    return out


def outcome(ship: np.ndarray, looked: np.ndarray, gains: np.ndarray) -> dict:
    """The design's figures from the shipped index of every replicate (and where it took a second look)."""
    did = ship >= 0
    g = np.where(did, gains[np.maximum(ship, 0)], 0.0)
    has_good = bool((gains >= 0.1 - EPS).any())
    return {"harm": float((did & (g <= -HARM + EPS)).mean()), "false_ship": float((did & (g <= EPS)).mean()),
            "power": float((did & (g >= 0.1 - EPS)).mean()) if has_good else None,
            "ships": float(did.mean()), "mean_gain": float(g.mean()), "second_look": float(looked.mean())}


def _n_second(n_val: int, design: tuple) -> int:
    return int(round(int(round(n_val * design[1])) * second_share(design[0])))


def simulate(rng, *, n_val: int, gains: np.ndarray, discordance: float, designs: list[tuple], reps: int,
             level: float = 0.95, p_start: float = 0.5, chunk: int = 2000) -> list[dict]:
    """Every design under one scenario, discordance and val size, on the same replicates. The second looks' fresh
    examples (as many as the largest n2) are drawn from a stream spawned off `rng`, which leaves its own draws as
    they would be without them."""
    fresh = rng.spawn(1)[0]
    n_more = max(_n_second(n_val, d) for d in designs)
    ships = {d: [] for d in designs}
    for first in range(0, reps, chunk):
        r = min(chunk, reps - first)
        base = (rng.random((r, n_val)) < p_start).astype(np.int8)
        cand = candidate_answers(rng, base, gains, discordance)
        if n_more:
            more = (fresh.random((r, n_more)) < p_start).astype(np.int8)
            base, cand = (np.concatenate([base, more], axis=1),
                          np.concatenate([cand, candidate_answers(fresh, more, gains, discordance)], axis=2))
        for d, s in _chunk_ships(rng, base, cand, n_val, designs, 1 - level).items():
            ships[d].append(s)
    rows = []
    for rule, share, f in designs:
        n_conf = int(round(n_val * share))
        ship, looked = (np.concatenate(x) for x in zip(*ships[(rule, share, f)]))
        rows.append({"n_val": n_val, "discordance": discordance, "rule": rule, "share": share, "finalists": f,
                     "n_search": n_val - n_conf, "n_confirm": n_conf, "n_second": _n_second(n_val, (rule, share, f))}
                    | outcome(ship, looked, gains))
    return rows


# --- exact tables -------------------------------------------------------------------------------------

def _passes(n: int, margin: float, alpha: float) -> np.ndarray:
    """[wins, losses] of n paired examples where the test passes: observed difference > 0 and p below alpha."""
    w, l = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    return (w > l) & (p_table(n, margin) < alpha)


def harm_level(n: int, margin: float, discordance: float, level: float = 0.95, n2: int = 0) -> float:
    """Exact chance that a candidate truly worse than the start by exactly `margin` ships when a share `discordance`
    of the answers differ: one test at the level on n examples, or (n2 > 0) two looks at half the level each, the
    second on n + n2 examples, taken when the first fails with the candidate ahead (the first look's outcomes that
    lead without passing convolved with the n2 fresh examples' outcomes)."""
    alpha = (1 - level) / (2 if n2 else 1)
    p_win, p_loss = (discordance - margin) / 2, (discordance + margin) / 2
    prob = trinomial(n, p_win, p_loss)
    first = _passes(n, margin, alpha)
    out = float(prob[first].sum())
    if n2:
        w, l = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        going = np.where(~first & (w > l), prob, 0.0)
        both = np.clip(fftconvolve(going, trinomial(n2, p_win, p_loss)), 0.0, None)  # P[wins, losses] of n + n2
        out += float(both[_passes(n + n2, margin, alpha)].sum())
    return out


def exact_harm_levels(n_confirms: list[int], discordances: list[float], level: float, second: float = 0.0
                      ) -> list[dict]:
    """The harm bound checked without simulation: per n_confirm (n1 of two looks with n2 = second * n1 when second >
    0), the level at the scenarios' discordances, the worst over any discordance below 1 (a grid from just above the
    margin to 0.995), and at discordance 1 (every answer differs: the edge of `harm_table`'s grid, apart because it is
    no search's case)."""
    grid = np.concatenate([HARM + np.geomspace(1e-4, 0.05, 30), np.linspace(0.07, 0.995, 186)])
    out = []
    for n in n_confirms:
        n2 = int(round(n * second))
        at = {str(d): harm_level(n, HARM, d, level, n2) for d in discordances}
        worst = [harm_level(n, HARM, d, level, n2) for d in grid]
        out.append({"n_confirm": n, "second": second, "n_second": n2, "at_discordance": at, "worst": max(worst),
                    "worst_discordance": float(grid[int(np.argmax(worst))]),
                    "all_differ": harm_level(n, HARM, 1.0, level, n2)})
    return out


def simplification(level: float = 0.95) -> list[dict]:
    """The step after the decision: how often a variant V truly `diff` worse than the shipped W (V-vs-W answers
    differing on a share `discordance`) is accepted, by the non-inferiority test at margin m and by "cannot tell
    them apart" (two-sided exact sign test p >= 1 - level). Exact trinomial sums."""
    out = []
    for n in (60, 84):
        w, l = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        m_ = w + l
        two_sided = np.where(m_ > 0, np.minimum(1.0, 2 * np.minimum(binom.sf(w - 1, m_, 0.5), binom.cdf(w, m_, 0.5))),
                             1.0)
        for d in (0.05, 0.1, 0.2):
            for diff in (0.0, -0.02, -0.05, -0.08):
                row = {"n_confirm": n, "discordance": d, "diff": diff}
                if -diff > d + EPS:  # V cannot be worse by more than the share of answers that differ
                    out.append(row | {"possible": False})
                    continue
                prob = trinomial(n, max((d + diff) / 2, 0.0), (d - diff) / 2)
                row |= {"possible": True, "not_told_apart": float(prob[two_sided >= 1 - level].sum())}
                for m in (0.03, 0.05):
                    row[f"accept_m{m}"] = float(prob[p_table(n, m) < 1 - level].sum())
                out.append(row)
    return out


# --- real pairs ---------------------------------------------------------------------------------------

def real_pairs(db: str) -> list[dict]:
    """(run, candidate, start answers, candidate answers) on the same test examples, from the finished runs of a
    benchmark store: every candidate a run scored on test, against that run's first baseline (the start; from the
    cache: the runs scored them)."""
    from promptlab import jobs, results
    from promptlab.store import Store

    store = Store(db)
    out = []
    try:
        for _, run in store.list_runs().iterrows():
            if run["status"] != "finished":
                continue
            run_id = run["id"]
            cands = store.candidates(run_id)
            if "test_score" not in cands.columns:
                continue
            scored = cands[cands["test_score"].notna()]["id"].tolist()
            if 1 not in scored or len(scored) < 2:
                continue
            dataset, target, objective = results.run_setup(store, run_id)
            rows = {cid: jobs.candidate_test_rows(store, run_id, cid, target, dataset, objective)
                    .set_index("example_idx")["correct"].astype(float) for cid in scored}
            for cid in scored:
                if cid == 1:
                    continue
                shared = rows[1].index.intersection(rows[cid].index)
                if len(shared) >= 50:
                    out.append({"run": run_id, "candidate": int(cid), "base": rows[1].loc[shared].to_numpy(),
                                "cand": rows[cid].loc[shared].to_numpy()})
    finally:
        store.close()
    return out


def load_real(arg: str) -> tuple[list[dict], list[str]]:
    """(the pairs of the stores that exist, the stores that do not); a missing store gets one line and is not
    opened (opening it would create an empty one)."""
    pairs, missing = [], []
    for db in filter(None, (s.strip() for s in arg.split(","))):
        if not Path(db).is_file():
            print(f"confirm_bench: {db} does not exist (its benchmark runs have not been run yet); skipped",
                  file=sys.stderr)
            missing.append(db)
            continue
        pairs += real_pairs(db)
    return pairs, missing


def summary_pair(path: Path) -> dict | None:
    """A ship_bench summary's (start, leader) pair on their shared test examples (doc["answers"][role]: example idx
    -> 0/1), with where it came from; None when the leader's answers are the start's or they share < 50 examples."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    answers = doc.get("answers") or {}
    start, leader = answers.get("start") or {}, answers.get("leader") or {}
    shared = sorted(set(start) & set(leader), key=int)
    if start == leader or len(shared) < 50:
        return None
    return {"run": doc.get("run_id"), "candidate": "leader", "base": np.array([start[k] for k in shared], float),
            "cand": np.array([leader[k] for k in shared], float), "task": doc.get("task"),
            "start": doc.get("start"), "code": doc.get("code"), "source": _rel(path)}


def _rel(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def load_summaries(arg: str) -> tuple[list[dict], list[str]]:
    """(the (start, leader) pairs of the ship_bench summaries named: files, or folders read recursively; one
    sentence on where they came from for the report)."""
    paths = []
    for item in filter(None, (x.strip() for x in arg.split(","))):
        item = Path(item)
        paths += sorted(item.rglob("*.json")) if item.is_dir() else [item] if item.is_file() else []
        if not item.exists():
            print(f"confirm_bench: {item} does not exist; skipped", file=sys.stderr)
    pairs = [x for x in map(summary_pair, paths) if x]
    listed = "; ".join(f"`{x['source']}` ({x['run']}, code {x['code']})" for x in pairs)
    note = (f"from {len(paths)} ship_bench summar{'y' if len(paths) == 1 else 'ies'} (`--real-summaries`), "
            f"{len(pairs)} (start, leader) pair{'' if len(pairs) == 1 else 's'} on their test answers"
            + (f", {len(paths) - len(pairs)} skipped (the leader was the start)" if len(paths) > len(pairs) else "")
            + (f": {listed}." if pairs else "."))
    return pairs, [note]


def pair_label(pair: dict) -> str:
    return f"{pair['task']} ({pair['start']} start)" if pair.get("task") else f"{pair['run']} #{pair['candidate']}"


def real_rates(pairs: list[dict], rng, *, n_val: int, shares: list[float], rules: list[str], level: float,
               reps: int = 2000) -> list[dict]:
    """Per share and rule, how often a confirmation on n_confirm examples drawn from each real pair's answers would
    ship its candidate: the harm rate over pairs worse by 0.02 or more on test, the ship rate over pairs better by
    0.10 or more, and the mean test gain shipped over all pairs (a pair's test gain counts as its true gain). A
    second look draws its n2 examples from the pair's answers too."""
    out = []
    one = np.ones((reps, 1)), np.zeros((reps, 1), dtype=int)  # one finalist, ahead in its (absent) search
    for share in shares:
        n_conf = int(round(n_val * share))
        n2s = {rule: int(round(n_conf * second_share(rule))) for rule in rules}
        rates = {rule: [] for rule in rules}
        gains = []
        for pair in pairs:
            d = pair["cand"] - pair["base"]
            gains.append(float(d.mean()))
            n_all = n_conf + max(n2s.values())
            dd = d[rng.integers(0, len(d), (reps, 1, n_all))]  # the same draws for every rule
            start = np.zeros((reps, n_all))  # dd is already the difference from the start
            for rule in rules:
                second = _wins_losses(dd, start, n_conf, n_conf + n2s[rule]) if n2s[rule] else None
                ship, _ = decision(*one, _wins_losses(dd, start, 0, n_conf), second, rule, 1, 1 - level)
                rates[rule].append(float((ship >= 0).mean()))
        g = np.asarray(gains)
        for rule in rules:
            r = np.asarray(rates[rule])
            harm, good = g <= -HARM + EPS, g >= 0.1 - EPS
            out.append({"n_val": n_val, "share": share, "n_confirm": n_conf, "n_second": n2s[rule], "rule": rule,
                        "pairs": len(g), "pairs_harmful": int(harm.sum()),
                        "harm": float(r[harm].mean()) if harm.any() else None,
                        "pairs_better_by_0.10": int(good.sum()), "power": float(r[good].mean()) if good.any() else None,
                        "mean_gain": float((r * g).mean()) if len(g) else None,
                        "per_pair": [{"pair": pair_label(p), "n_test": len(p["base"]), "gain": float(x), "ship": float(y)}
                                     for p, x, y in zip(pairs, g, r)]})
    return out


# --- choosing the design ------------------------------------------------------------------------------

def _cells(rows: list[dict], n_val: int, design: tuple, scenario: str | None = None) -> list[dict]:
    rule, share, f = design
    return [r for r in rows if r["n_val"] == n_val and r["rule"] == rule and r["share"] == share
            and r["finalists"] == f and (scenario is None or r["scenario"] == scenario)]


def summary(rows: list[dict], n_val: int, design: tuple) -> dict:
    """One design at one val size: worst harm and false ship over every scenario and discordance, power and mean
    gain per discordance where it matters, and the score the choice maximizes (mean gain over GOAL_SCENARIOS and
    the discordances)."""
    cells = _cells(rows, n_val, design)
    by = {(r["scenario"], r["discordance"]): r for r in cells}
    discs = sorted({r["discordance"] for r in cells})
    worst = max(cells, key=lambda r: r["harm"])

    def per_d(scenario, key):
        return [by[(scenario, d)][key] if (scenario, d) in by else None for d in discs]
    goal = [by[(s, d)]["mean_gain"] for s in GOAL_SCENARIOS for d in discs if (s, d) in by]
    return {"design": design, "n_confirm": cells[0]["n_confirm"], "n_second": cells[0]["n_second"],
            "discordances": discs, "harm": worst["harm"],
            "harm_at": (worst["scenario"], worst["discordance"]),
            "false_ship": max(r["false_ship"] for r in cells),
            "harm_d": [max(r["harm"] for r in cells if r["discordance"] == d) for d in discs],
            "false_d": [max(r["false_ship"] for r in cells if r["discordance"] == d) for d in discs],
            "power": per_d("one +0.10", "power"), "power_alone": per_d("+0.10 alone", "power"),
            "gain_10": per_d("one +0.10", "mean_gain"), "gain_05": per_d("one +0.05", "mean_gain"),
            "gain_worse": per_d("worse or equal", "mean_gain"), "second_look": per_d("one +0.10", "second_look"),
            "score": float(np.mean(goal))}


def choose(rows: list[dict], val_sizes: list[int], designs: list[tuple], max_harm: float = 0.05) -> dict:
    """The best design at each val size (highest score among those whose harm rate is <= max_harm everywhere), and
    one default: of the designs within WITHIN of the best at every val size, the one with the fewest finalists (a
    second finalist is scored on the held-back examples too, for a gain within noise), then the highest total score;
    else the feasible design whose largest shortfall is smallest."""
    s = {(v, d): summary(rows, v, d) for v in val_sizes for d in designs}
    feasible = [d for d in designs if all(s[(v, d)]["harm"] <= max_harm for v in val_sizes)]
    best = {}
    for v in val_sizes:
        here = [d for d in designs if s[(v, d)]["harm"] <= max_harm]
        best[v] = max(here, key=lambda d: s[(v, d)]["score"]) if here else None
    if not feasible:
        return {"best": best, "default": None, "close": [], "shortfall": {}, "summaries": s}

    def shortfall(d):
        return {v: s[(v, best[v])]["score"] - s[(v, d)]["score"] for v in val_sizes}
    close = [d for d in feasible if max(shortfall(d).values()) <= WITHIN]
    close.sort(key=lambda d: (d[2], -sum(s[(v, d)]["score"] for v in val_sizes)))
    if close:
        default = close[0]
    else:
        default = min(feasible, key=lambda d: max(shortfall(d).values()))
    return {"best": best, "default": default, "close": close, "shortfall": shortfall(default), "summaries": s}


# --- the report ---------------------------------------------------------------------------------------

def name(design: tuple) -> str:
    rule, share, f = design
    return f"{rule}, {share} held back, {f} finalist{'s' if f > 1 else ''}"


def _n_text(r: dict) -> str:
    """n_confirm, or 'n1 + n2' with a second look."""
    return f"{r['n_confirm']} + {r['n_second']}" if r.get("n_second") else str(r["n_confirm"])


def _pair(values: list, fmt: str) -> str:
    return " / ".join("—" if v is None else format(v, fmt) for v in values)


def figures(s: dict) -> str:
    """A design's figures in one phrase (the slashes run over the discordances)."""
    return (f"harm at most {s['harm']:.3f}, false ship at most {s['false_ship']:.3f}; power {_pair(s['power'], '.2f')}"
            f" and mean gain {_pair(s['gain_10'], '+.3f')} in 'one +0.10', mean gain {_pair(s['gain_05'], '+.3f')} in "
            f"'one +0.05'")


def reading(rows: list[dict], choice: dict, val_sizes: list[int], exact: list[dict], exact2: list[dict],
            simp: list[dict]) -> list[str]:
    """The tables in a few sentences: the chosen design per val size next to the old default, which design to make
    the default and why, two looks against one, where harm goes above 0.05 (if anywhere), and what the exact tables
    (`exact`: one look; `exact2`: two looks) say."""
    s, d = choice["summaries"], choice["default"]
    discs = next(iter(s.values()))["discordances"]
    out = [f"Figures \"a / b\" are at {' / '.join(f'{x:.0%}' for x in discs)} of answers differing from the start's. "
           "Mean gain: the mean true gain of what ships per search (0 when the start stays). The score: the mean "
           f"gain averaged over {' and '.join(repr(g) for g in GOAL_SCENARIOS)} and both discordances; the choice "
           "maximizes it among the designs whose harm rate is <= 0.05 in every scenario.", ""]
    for v in val_sizes:
        b = choice["best"][v]
        shown = d or b  # the one default where there is one: the line is what the default would do at this size
        line = f"- **val {v}**: " + (f"the chosen design ({name(shown)}, n_confirm {_n_text(s[(v, shown)])}): "
                                      f"{figures(s[(v, shown)])}" if shown else "no design keeps the harm rate <= 0.05")
        if (v, OLD_DEFAULT) in s:
            line += f"; against the old default ({name(OLD_DEFAULT)}): {figures(s[(v, OLD_DEFAULT)])}"
        if b and shown != b and s[(v, b)]["score"] - s[(v, shown)]["score"] >= 5e-5:
            line += (f". The highest score here: {name(b)}, {s[(v, b)]['score']:+.4f} against "
                     f"{s[(v, shown)]['score']:+.4f}")
        out.append(line + ".")
    if d:
        fall = ", ".join(f"{x:.4f} below the best at val {v}" if x >= 5e-5 else f"level with the best at val {v}"
                         for v, x in choice["shortfall"].items())
        out.append(f"- **Default: {name(d)}** (score {fall}). "
                   + (f"Within {WITHIN} of the best at every val size: {_grouped(choice['close'])}; of those the "
                      "fewest finalists, then the highest total score." if choice["close"] else
                      f"No design is within {WITHIN} of the best at every val size; this one falls short least."))
    out += _looks_lines(s, d, val_sizes)
    out += [_harm_line(rows, exact + exact2),
            _exact_line(exact, "one harm-rule test passes") + " The simulated rates differ from these by the search's "
            "filter (a finalist must beat the start on the search part) and Monte Carlo noise.",
            *(_exact_line([e for e in exact2 if e["second"] == x], f"two looks ({_n2_text(x)}, each at half the "
                          "level) ship") for x in sorted({e["second"] for e in exact2}, reverse=True)),
            *_shape_lines(s, val_sizes), _simplification_line(simp)]
    return out


def _n2_text(second: float) -> str:
    return "n2 = n1" if second == 1 else f"n2 = {second:g} n1"


def _looks_lines(s: dict, default: tuple | None, val_sizes: list[int]) -> list[str]:
    """Each two-look rule against one look, at the default's share and number of finalists (0.5 and 1 without
    one): power and mean gain, the score, the harm and false-ship bounds, how often the second look is taken."""
    share, f = default[1:] if default else (0.5, 1)
    one = (f"harm {HARM:g}", share, f)
    out = []
    for v in val_sizes:
        if (v, one) not in s:
            continue
        a = s[(v, one)]
        for rule in sorted({r for w, (r, *_) in s if w == v and second_share(r)}, key=rule_key, reverse=True):
            if (v, (rule, share, f)) not in s:
                continue
            b = s[(v, (rule, share, f))]
            out.append(f"- **val {v}, two looks** ({name((rule, share, f))}, n {_n_text(b)}) against one ("
                       f"n {_n_text(a)}): power {_pair(b['power'], '.2f')} against {_pair(a['power'], '.2f')} and "
                       f"mean gain {_pair(b['gain_10'], '+.3f')} against {_pair(a['gain_10'], '+.3f')} in 'one +0.10'"
                       f", mean gain {_pair(b['gain_05'], '+.3f')} against {_pair(a['gain_05'], '+.3f')} in "
                       f"'one +0.05' (score {b['score']:+.4f} against {a['score']:+.4f}); harm at most "
                       f"{b['harm']:.3f} against {a['harm']:.3f}, false ship at most {b['false_ship']:.3f} against "
                       f"{a['false_ship']:.3f}; the second look taken in {_pair(b['second_look'], '.0%')} of "
                       "searches in 'one +0.10'.")
    return out


def _grouped(designs: list[tuple]) -> str:
    """Designs in few words: the shares of each rule and number of finalists."""
    keys = sorted({(r, f) for r, _, f in designs}, key=lambda k: (rule_key(k[0]), k[1]))
    return "; ".join(f"{r}, {f} finalist{'s' if f > 1 else ''}, at "
                     + ", ".join(str(s) for s in sorted(x[1] for x in designs if (x[0], x[2]) == (r, f))) + " held back"
                     for r, f in keys)


def _harm_line(rows: list[dict], exact: list[dict]) -> str:
    """Every cell whose simulated harm rate is above 0.05 (those designs are left out of the choice), each with the
    exact level of its rule (one look or two) at its n_confirm and discordance, which tells a real excess from Monte
    Carlo noise; and the highest cell of each harm rule."""
    level = {(e["n_confirm"], e["n_second"], float(d)): x for e in exact for d, x in e["at_discordance"].items()}
    over = [r for r in rows if r["harm"] > 0.05]
    tops = [max((r for r in rows if r["rule"] == rule), key=lambda r: r["harm"])
            for rule in sorted({r["rule"] for r in rows if r["rule"] != "sign"}, key=rule_key)]
    where = (" (the highest: " + "; ".join(f"{t['rule']}: {t['harm']:.3f}, val {t['n_val']}, '{t['scenario']}', "
                                           f"{t['discordance']:.0%} differing, {t['share']} held back, "
                                           f"{t['finalists']} finalist{'s' if t['finalists'] > 1 else ''}"
                                           for t in tops) + ")" if tops else "")
    if not over:
        return f"- Simulated harm rate above 0.05: in no cell{where}."
    cells = "; ".join(f"{r['harm']:.3f} at val {r['n_val']}, '{r['scenario']}', {r['discordance']:.0%} differing, "
                      f"{name((r['rule'], r['share'], r['finalists']))} (exact level of its rule there: "
                      f"{_fmt(level.get((r['n_confirm'], r['n_second'], r['discordance'])), '.4f')})" for r in over)
    return (f"- **Simulated harm rate above 0.05** in {len(over)} cell{'s' if len(over) > 1 else ''}, left out of "
            f"the choice: {cells}{where}.")


def _exact_line(exact: list[dict], what: str) -> str:
    """What an exact table says: the worst level over its n_confirm (n1) and discordances, the level at the
    scenarios' discordances (also at EXACT_N apart), and where every answer differs."""
    w = max(exact, key=lambda e: e["worst"])
    edge = max(exact, key=lambda e: e["all_differ"])
    discs = list(w["at_discordance"])
    at = " / ".join(f"{max(e['at_discordance'][d] for e in exact):.4f}" for d in discs)
    named = "; ".join(f"n {_n_text(e)}: " + " / ".join(f"{e['at_discordance'][d]:.4f}" for d in discs)
                      for e in exact if e["n_confirm"] in EXACT_N)
    return (f"- Exact (no simulation): {what} a finalist truly at -{HARM} with probability at most {w['worst']:.4f} "
            f"over every n_confirm here ({', '.join(str(e['n_confirm']) for e in exact)}) and any discordance below "
            f"1 (the highest at n {_n_text(w)}, {w['worst_discordance']:.1%} differing); at most {at} at the "
            f"scenarios' discordances ({named}). Where every answer differs (discordance 1, the edge of "
            f"`harm_table`'s grid, no search's case) it reaches {edge['all_differ']:.4f} (n {_n_text(edge)}).")


def _shape_lines(s: dict, val_sizes: list[int]) -> list[str]:
    """What a second finalist and the share held back do to the score, over every design."""
    designs = sorted({d for _, d in s})
    rules = sorted({d[0] for d in designs}, key=rule_key)
    delta = [s[(v, (r, sh, 2))]["score"] - s[(v, (r, sh, 1))]["score"] for v in val_sizes for r, sh, f in designs
             if f == 1 and (v, (r, sh, 2)) in s]
    out = []
    if delta:
        out.append(f"- A second finalist changes the score by {min(delta):+.4f} to {max(delta):+.4f} (over rules, "
                   "shares and val sizes).")
    parts = []
    for v in val_sizes:
        for r in rules:
            one = [d for d in designs if d[0] == r and d[2] == 1]
            if one:
                top = max(one, key=lambda d: s[(v, d)]["score"])
                parts.append(f"val {v}, {r}: {top[1]} ({s[(v, top)]['score']:+.4f})")
    if parts:
        out.append("- The share held back with the highest score (1 finalist, harm bound not applied): "
                   + "; ".join(parts) + ".")
    return out


def _simplification_line(simp: list[dict]) -> str:
    ok = [r for r in simp if r["possible"]]
    drop = [r for r in ok if abs(r["diff"] + 0.08) < EPS]
    same = [r for r in ok if r["diff"] == 0]
    if not drop or not same:
        return "- Simplification: no cell."
    return (f"- Simplification (exact): a variant truly 0.08 worse than the shipped result is accepted in at most "
            f"{max(r['accept_m0.05'] for r in drop):.3f} (m 0.05) / {max(r['accept_m0.03'] for r in drop):.3f} "
            f"(m 0.03) of cases, where \"cannot tell them apart\" accepts it in up to "
            f"{max(r['not_told_apart'] for r in drop):.3f}; an equally good variant is accepted in "
            f"{min(r['accept_m0.05'] for r in same):.2f} to {max(r['accept_m0.05'] for r in same):.2f} (m 0.05), "
            f"{min(r['accept_m0.03'] for r in same):.2f} to {max(r['accept_m0.03'] for r in same):.2f} (m 0.03).")


def _fmt(x, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def design_table(choice: dict, val_sizes: list[int]) -> list[str]:
    """One row per val size, discordance and design: the worst harm and false ship over the scenarios, power and
    mean gain where they matter, how often a second look is taken."""
    s = choice["summaries"]
    lines = ["| val | differing | rule | held back | n confirm | finalists | harm (worst scenario) | "
             "false ship (worst) | power, one +0.10 | power, +0.10 alone | mean gain, one +0.10 | "
             "mean gain, one +0.05 | mean gain, worse or equal | second look, one +0.10 |", "|---" * 14 + "|"]
    marks = {choice["default"]: " **(default)**", OLD_DEFAULT: " (old default)"}
    for v in val_sizes:
        designs = sorted({x for w, x in s if w == v}, key=lambda x: (rule_key(x[0]), x[1], x[2]))
        for i, d in enumerate(s[(v, designs[0])]["discordances"]):
            for design in designs:
                x = s[(v, design)]
                lines.append(f"| {v} | {d} | {design[0]}{marks.get(design, '')} | {design[1]} | {_n_text(x)} | "
                             f"{design[2]} | {x['harm_d'][i]:.3f} | {x['false_d'][i]:.3f} | "
                             f"{_fmt(x['power'][i], '.3f')} | {_fmt(x['power_alone'][i], '.3f')} | "
                             f"{_fmt(x['gain_10'][i], '+.4f')} | {_fmt(x['gain_05'][i], '+.4f')} | "
                             f"{_fmt(x['gain_worse'][i], '+.4f')} | "
                             f"{_fmt(x['second_look'][i] if x['n_second'] else None, '.3f')} |")
    return lines


def exact_table(exact: list[dict]) -> list[str]:
    discs = list(exact[0]["at_discordance"]) if exact else []
    lines = [f"| {'n1 + n2' if exact and exact[0]['n_second'] else 'n confirm'} | "
             + " | ".join(f"{float(d):.0%} differing" for d in discs)
             + " | worst, any discordance < 1 | at | every answer differs |", "|---" * (len(discs) + 4) + "|"]
    for e in exact:
        lines.append(f"| {_n_text(e)} | " + " | ".join(f"{e['at_discordance'][d]:.4f}" for d in discs)
                     + f" | {e['worst']:.4f} | {e['worst_discordance']:.1%} | {e['all_differ']:.4f} |")
    return lines


def simplification_table(simp: list[dict]) -> list[str]:
    lines = ["| n confirm | V-vs-W differing | true V − W | accepted, m 0.03 | accepted, m 0.05 | "
             "not told apart (two-sided sign p >= 0.05) |", "|---|---|---|---|---|---|"]
    for r in simp:
        cells = ([f"{r['accept_m0.03']:.3f}", f"{r['accept_m0.05']:.3f}", f"{r['not_told_apart']:.3f}"]
                 if r["possible"] else ["impossible (larger than the share differing)", "", ""])
        lines.append(f"| {r['n_confirm']} | {r['discordance']} | {r['diff']:+.2f} | " + " | ".join(cells) + " |")
    return lines


def real_table(real: list[dict]) -> list[str]:
    lines = ["| val | held back | n confirm | rule | pairs | pairs worse by >= 0.02 | harm rate | "
             "pairs better by >= 0.10 | ships them | mean test gain shipped (all pairs) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in real:
        lines.append(f"| {r['n_val']} | {r['share']} | {_n_text(r)} | {r['rule']} | {r['pairs']} | "
                     f"{r['pairs_harmful']} | {_fmt(r['harm'], '.3f')} | {r['pairs_better_by_0.10']} | "
                     f"{_fmt(r['power'], '.3f')} | {_fmt(r['mean_gain'], '+.4f')} |")
    return lines


def real_pair_lines(real: list[dict], share: float) -> tuple[list[str], list[str]]:
    """Per real pair at one share: the table (one row per val size and pair, a column per rule) and one line per
    val size and pair for the console."""
    here = [r for r in real if abs(r["share"] - share) < EPS]
    rules = list(dict.fromkeys(r["rule"] for r in here))
    table = ["| val | pair | test examples | test gain | " + " | ".join(
        f"ships: {rule} (n {_n_text(next(r for r in here if r['rule'] == rule))})" for rule in rules) + " |",
        "|---" * (4 + len(rules)) + "|"] if here else []
    printed = []
    for v in dict.fromkeys(r["n_val"] for r in here):
        rows = {r["rule"]: r for r in here if r["n_val"] == v}
        for i, p in enumerate(rows[rules[0]]["per_pair"]):
            ships = [rows[rule]["per_pair"][i]["ship"] for rule in rules]
            table.append(f"| {v} | {p['pair']} | {p['n_test']} | {p['gain']:+.3f} | "
                         + " | ".join(f"{x:.3f}" for x in ships) + " |")
            printed.append(f"val {v}, {share} held back, {p['pair']}: test gain {p['gain']:+.3f}; ships "
                           + ", ".join(f"{x:.3f} ({rule})" for rule, x in zip(rules, ships)))
    return table, printed


def full_table(rows: list[dict]) -> list[str]:
    lines = ["| val | differing | scenario | rule | held back | n confirm | finalists | harm | false ship | "
             "power (+0.10 shipped) | mean true gain shipped | second look |", "|---" * 12 + "|"]
    for r in rows:
        lines.append(f"| {r['n_val']} | {r['discordance']} | {r['scenario']} | {r['rule']} | {r['share']} | "
                     f"{_n_text(r)} | {r['finalists']} | {r['harm']:.3f} | {r['false_ship']:.3f} | "
                     f"{_fmt(r['power'], '.3f')} | {r['mean_gain']:+.4f} | "
                     f"{_fmt(r['second_look'] if r['n_second'] else None, '.3f')} |")
    return lines


def write(args, argv, rows, choice, exact, exact2, simp, real, notes: list[str], seconds: float,
          per_pair: list[str] = ()) -> list[str]:
    """The RESULTS.md section and the JSON; returns the reading lines (main prints them)."""
    vals = [int(v) for v in args.val_sizes.split(",")]
    command = "python benchmarks/confirm_bench.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    read = reading(rows, choice, vals, exact, exact2, simp)
    se = (0.05 * 0.95 / args.reps) ** 0.5
    lines = ["## The confirmation: which design ships the most gain within the harm bound", "",
             f"Command: `{command.strip()}`  ",
             f"Machine: {machine()}. Run time {seconds:.0f} s. Val sizes {', '.join(map(str, vals))} (140: a 400-row "
             "file under the default 30/35/35 split; 100: DSPy's 50/100/200 split), each split into the search part "
             f"and the held-back part (n_confirm = round(val × share)). {args.candidates} candidates per search, "
             f"{args.reps} replicates per cell (the same replicates for every design), start accuracy 0.5, tests "
             f"one-sided at {1 - args.level:.0%}. Rules: *sign* = the exact sign test (McNemar) of \"not better\"; "
             f"*harm {HARM}* = Tango's exact unconditional test of \"worse than the start by {HARM} or "
             "more\"; both ship only a finalist that also scored higher than the start on the held-back part. With 2 "
             "finalists they are tested in search order, stopping at the first that fails, and the best of those "
             f"that pass ships. *harm {HARM}, 2 looks*: the same test with a second look (as "
             "`confirmation.decide` takes it when the budget allows), each look at half the level: when no finalist "
             "passes on the n1 held-back examples and the first scored higher than the start there, they are scored "
             "on n2 fresh examples (n2 = n1, or the share of n1 the rule names) and tested again on all n1 + n2 (n "
             "confirm: n1 + n2; the fresh examples are not taken from val, and *second look* is the share of searches "
             f"that take it). *Harm*: a candidate truly worse by {HARM} or more ships; *false ship*: one not truly "
             f"better ships. Monte Carlo standard error of a rate near 0.05: ±{se:.4f}.", "",
             "Reading:", "", *read, ""]
    lines += ["### Designs (worst harm and false ship over the scenarios at that discordance)", "",
              *design_table(choice, vals), "",
              f"### The harm rule's level, exact: one test of a finalist truly at -{HARM} passes", "",
              *exact_table(exact), "",
              f"### The two-look rule's level, exact: a finalist truly at -{HARM} ships at look 1 or look 2 (each at "
              f"{(1 - args.level) / 2:.1%})", "", *exact_table(exact2), "",
              "### The simplification step: a variant V of the shipped result W accepted when the test of \"V worse "
              "than W by m or more\" rejects at 5% (exact)", "", *simplification_table(simp), ""]
    if real:
        lines += ["### Real pairs: confirmation sets resampled from benchmark runs' test answers", "",
                  *real_table(real), ""]
    if per_pair:
        share = choice["default"][1] if choice["default"] else 0.5
        lines += [f"### Real pairs one by one, {share} held back (the default's share): test gain and how often a "
                  "confirmation ships the candidate", "", *per_pair, ""]
    lines += ["Real pairs: " + " ".join(notes), ""] if notes else []
    lines += ["<details><summary>Every cell (val × discordance × scenario × design)</summary>", "",
              *full_table(rows), "", "</details>"]
    write_section("confirmation", "\n".join(lines))
    json_choice = {"default": choice["default"], "within_0.002_everywhere": choice["close"],
                   "shortfall": {str(v): x for v, x in choice["shortfall"].items()},
                   "best": {str(v): d for v, d in choice["best"].items()},
                   "summaries": [{"n_val": v} | x for (v, _), x in choice["summaries"].items()]}
    OUT_JSON.write_text(json.dumps({"settings": vars(args), "seconds": seconds, "choice": json_choice,
                                    "simulation": rows, "exact_harm_level": exact,
                                    "exact_harm_level_two_looks": exact2, "simplification": simp,
                                    "real": real}, indent=1))
    return read


def run_simulation(args, rng, designs: list[tuple]) -> list[dict]:
    rows = []
    for n_val in (int(v) for v in args.val_sizes.split(",")):
        for d in (float(x) for x in args.discordance.split(",")):
            for scenario, make in SCENARIOS.items():
                t0 = time.time()
                for row in simulate(rng, n_val=n_val, gains=make(args.candidates), discordance=d, designs=designs,
                                    reps=args.reps, level=args.level):
                    rows.append(row | {"scenario": scenario})
                print(f"val {n_val}, {d:.0%} differing, {scenario}: {time.time() - t0:.1f} s", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=4000, help="replicates per scenario, discordance and val size")
    ap.add_argument("--candidates", type=int, default=20, help="candidates a search scores (K)")
    ap.add_argument("--discordance", default="0.15,0.3", help="shares of answers that differ from the start's")
    ap.add_argument("--val-sizes", default="140,100", help="val examples (held back + search)")
    ap.add_argument("--shares", default="0.3,0.4,0.5,0.6,0.7", help="shares of val held back for the confirmation")
    ap.add_argument("--finalists", default="1,2")
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--two-looks", default="1,0.5", help="n2 / n1 of the two-look rules' second looks (empty: none)")
    ap.add_argument("--real", help="benchmark stores (auto_bench-<target>.duckdb, comma-separated) whose runs' test "
                                   "answers to resample; missing ones are skipped")
    ap.add_argument("--real-summaries", nargs="?", const=str(SHIP_RUNS),
                    help="ship_bench summaries (files or folders, comma-separated; alone: every summary under "
                         "benchmarks/ship_runs/) whose runs' (start, leader) test answers to resample")
    ap.add_argument("--real-reps", type=int, default=2000, help="resampled confirmation sets per real pair")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    seconds = [float(x) for x in args.two_looks.split(",") if x.strip()]
    rules = ["sign", f"harm {HARM:g}", *(two_look_rule(x) for x in seconds)]
    shares = [float(x) for x in args.shares.split(",")]
    vals = [int(v) for v in args.val_sizes.split(",")]
    designs = [(r, s, int(f)) for r in rules for s in shares for f in args.finalists.split(",")]
    rows = run_simulation(args, rng, designs)
    choice = choose(rows, vals, designs)
    n_confirms = sorted({int(round(v * s)) for v in vals for s in shares} | set(EXACT_N))
    discs = [float(x) for x in args.discordance.split(",")]
    exact = exact_harm_levels(n_confirms, discs, args.level)
    exact2 = [e for x in seconds for e in exact_harm_levels(n_confirms, discs, args.level, x)]
    simp = simplification(args.level)
    real, notes = [], []
    pairs, per_pair, printed = [], [], []
    if args.real:
        pairs, missing = load_real(args.real)
        if missing:
            notes.append(f"skipped {', '.join(f'`{m}`' for m in missing)}: not there yet (its benchmark runs have not "
                         "been run).")
    if args.real_summaries:
        more, said = load_summaries(args.real_summaries)
        pairs, notes = pairs + more, notes + said
    if (args.real or args.real_summaries) and not pairs:
        notes.append("none to resample (no finished run with test answers in the sources given).")
    for v in vals if pairs else []:
        real += real_rates(pairs, rng, n_val=v, shares=shares, rules=rules, level=args.level, reps=args.real_reps)
    if real:
        per_pair, printed = real_pair_lines(real, choice["default"][1] if choice["default"] else 0.5)
    read = write(args, argv, rows, choice, exact, exact2, simp, real, notes, time.time() - t0, per_pair)
    print("\n".join(read + notes + printed))
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
