"""How strong the confirmation can be: false-ship rate and power of the designs a run could use, by simulation
and on the shared tasks' real answers.

    python benchmarks/confirm_bench.py                       # simulation only (seconds)
    python benchmarks/confirm_bench.py --real A.duckdb,B.duckdb   # and resampling of benchmark runs' test answers

A run holds back a share of val; at the end the best few candidates by search score (the finalists) are
scored there with the baseline and tested against it, one-sided and paired, in search order, stopping at the
first that fails; of those that pass, the best on the held-back examples replaces the baseline. A *false ship*
is a result that replaces the baseline without being truly better (true gain <= 0); *power* is the chance that
a candidate truly better by +0.10 is shipped.

The simulation draws, per replicate, a baseline's answers on the val split of a 400-row file (140 examples,
the default split) and K candidates' answers that differ from the baseline's on a share `discordance` of the
examples, with true gains as the scenario says; racing is not modelled (every candidate reads all of the
search part), which makes the search's pick as good as it can be. The real-data part takes pairs (the
baseline and a candidate) scored on the same test examples in benchmark runs, treats those answers as the
population, and draws confirmation sets from it: how often would this design have shipped that candidate?

Writes the "confirmation" section of benchmarks/RESULTS.md and benchmarks/confirm_results.json.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binom

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine, write_section  # noqa: E402

OUT_JSON = ROOT / "benchmarks" / "confirm_results.json"
N_VAL = 140  # the val split of a 400-row file under the default split (0.3 / 0.35 / 0.35)


def sign_p(wins: np.ndarray, losses: np.ndarray, mid: bool = False) -> np.ndarray:
    """One-sided p-value of the paired sign test (exact McNemar): P(X >= wins) for X ~ Bin(wins + losses, 1/2);
    `mid`: the mid-p version, P(X > wins) + P(X = wins) / 2."""
    m = wins + losses
    upper = binom.sf(wins - 1, m, 0.5)
    if mid:
        upper = upper - 0.5 * binom.pmf(wins, m, 0.5)
    return np.where(m > 0, upper, 1.0)


def candidate_answers(rng, base: np.ndarray, gains: np.ndarray, discordance: float) -> np.ndarray:
    """Correctness (R, K, n) of K candidates whose answers differ from the baseline's (R, n) on about a share
    `discordance` of the examples, with a true gain `gains` (K,): a wrong baseline answer is made right with
    probability (d + g) / 2 / P(wrong), a right one wrong with (d - g) / 2 / P(right)."""
    p = base.mean()
    up = np.clip((discordance + gains) / 2 / max(1 - p, 1e-9), 0, 1)[None, :, None]
    down = np.clip((discordance - gains) / 2 / max(p, 1e-9), 0, 1)[None, :, None]
    u = rng.random((base.shape[0], len(gains), base.shape[1]))
    b = base[:, None, :]
    return np.where(b == 1, (u >= down).astype(np.int8), (u < up).astype(np.int8))


def simulate(rng, *, share: float, finalists: int, level: float, mid: bool, gains: np.ndarray, discordance: float,
             reps: int, procedure: str = "sequence", p_base: float = 0.5, n_val: int = N_VAL) -> dict:
    """One design under one scenario: how often a truly-not-better candidate ships, how often one at least
    +0.10 better ships, and the mean true gain of the result (0 when the baseline stays). `procedure`:
    "sequence" tests the finalists in search order at the full level, stopping at the first that fails;
    "bonferroni" tests each at (1 - level) / finalists."""
    n_conf = int(round(n_val * share))
    n_search = n_val - n_conf
    shipped_false = shipped_good = 0
    gain_sum = 0.0
    chunk = 2000
    for start in range(0, reps, chunk):
        r = min(chunk, reps - start)
        base = (rng.random((r, n_val)) < p_base).astype(np.int8)
        cand = candidate_answers(rng, base, gains, discordance)
        search = cand[:, :, :n_search].mean(axis=2) - base[:, None, :n_search].mean(axis=2)
        # finalists: the best few by search score that beat the baseline there (ties at random)
        order = np.argsort(-(search + rng.random(search.shape) * 1e-6), axis=1)[:, :finalists]
        diff = cand[:, :, n_search:] - base[:, None, n_search:]
        wins = (diff > 0).sum(axis=2)
        losses = (diff < 0).sum(axis=2)
        p = sign_p(wins, losses, mid)
        conf_gain = diff.mean(axis=2)
        for i in range(r):
            passed = []
            alpha = (1 - level) / (finalists if procedure == "bonferroni" else 1)
            for k in order[i]:
                if search[i, k] <= 0:
                    break
                if conf_gain[i, k] > 0 and p[i, k] < alpha:
                    passed.append(k)
                elif procedure == "sequence":
                    break
            if passed:
                k = max(passed, key=lambda j: conf_gain[i, j])
                g = gains[k]
                shipped_false += g <= 0
                shipped_good += g >= 0.1 - 1e-9
                gain_sum += g
    return {"share": share, "n_search": n_search, "n_confirm": n_conf, "finalists": finalists, "level": level,
            "test": ("mid-p sign" if mid else "exact sign") + (", Bonferroni" if procedure == "bonferroni" and finalists > 1 else ""),
            "false_ship": shipped_false / reps,
            "power": shipped_good / reps, "mean_gain": gain_sum / reps}


SCENARIOS = {
    # every candidate exactly as good as the baseline but answering differently: the least favourable null
    "null": lambda k: np.zeros(k),
    # what searches mostly produce: candidates a little worse, some as good
    "worse or equal": lambda k: -np.abs(np.linspace(0.0, 0.12, k)),
    # one candidate truly +0.10, the rest as in "worse or equal"
    "one +0.10": lambda k: np.concatenate([[0.10], -np.abs(np.linspace(0.0, 0.12, k - 1))]),
    # the confirmation alone: the one finalist is truly +0.10
    "+0.10 alone": lambda k: np.array([0.10]),
}


def real_pairs(db: str) -> list[dict]:
    """(run, candidate, baseline answers, candidate answers) on the same test examples, from the finished runs of
    a benchmark store: every candidate a run scored on test, against that run's first baseline (from the cache:
    the runs scored them)."""
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


def real_rates(pairs: list[dict], rng, *, share: float, level: float, mid: bool, reps: int = 2000) -> dict:
    """For each real pair, how often a confirmation on n_confirm examples drawn from its answers would ship the
    candidate; pooled over pairs whose observed gain is <= 0 (false ships) and >= +0.10 (power)."""
    n_conf = int(round(N_VAL * share))
    false, good = [], []
    for pair in pairs:
        d = pair["cand"] - pair["base"]
        gain = d.mean()
        idx = rng.integers(0, len(d), (reps, n_conf))
        dd = d[idx]
        wins, losses = (dd > 0).sum(axis=1), (dd < 0).sum(axis=1)
        ship = (dd.mean(axis=1) > 0) & (sign_p(wins, losses, mid) < 1 - level)
        if gain <= 0:
            false.append(ship.mean())
        elif gain >= 0.1:
            good.append(ship.mean())
    return {"share": share, "n_confirm": n_conf, "level": level, "test": "mid-p sign" if mid else "exact sign",
            "pairs_not_better": len(false), "false_ship": float(np.mean(false)) if false else None,
            "pairs_better_by_0.10": len(good), "power": float(np.mean(good)) if good else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=4000)
    ap.add_argument("--candidates", type=int, default=20, help="candidates a search scores (K)")
    ap.add_argument("--discordance", default="0.15,0.3", help="shares of answers that differ from the baseline's")
    ap.add_argument("--shares", default="0.3,0.4,0.5,0.6,0.7")
    ap.add_argument("--finalists", default="1,2,3")
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--real", help="benchmark stores (auto_bench-<target>.duckdb, comma-separated) whose runs' test "
                                   "answers to resample")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    shares = [float(x) for x in args.shares.split(",")]
    finals = [int(x) for x in args.finalists.split(",")]
    discs = [float(x) for x in args.discordance.split(",")]
    rows = []
    for d in discs:
        for name, make in SCENARIOS.items():
            gains = make(args.candidates)
            for share in shares:
                for f in finals if len(gains) > 1 else [1]:
                    for mid, procedure in ((False, "sequence"), (True, "sequence"), (False, "bonferroni")):
                        if procedure == "bonferroni" and f == 1:
                            continue
                        row = simulate(rng, share=share, finalists=f, level=args.level, mid=mid, gains=gains,
                                       discordance=d, reps=args.reps, procedure=procedure)
                        row |= {"scenario": name, "discordance": d}
                        rows.append(row)
                        print(f"d={d} {name:<15} share {share} finalists {f} {row['test']:<10}: false ship "
                              f"{row['false_ship']:.3f}, power {row['power']:.3f}, mean gain {row['mean_gain']:+.4f}",
                              flush=True)
    real = []
    if args.real:
        pairs = [pair for db in args.real.split(",") for pair in real_pairs(db)]
        for share in shares:
            for mid in (False, True):
                real.append(real_rates(pairs, rng, share=share, level=args.level, mid=mid))
    write(args, argv, rows, real)
    return 0


def reading(rows: list[dict]) -> list[str]:
    """The design table in a few sentences: each design's worst false-ship rate over the scenarios, and its power
    where one candidate is truly +0.10 (the search has to find it and the confirmation to pass it)."""
    def cell(share, finalists, test, scenario, d):
        return next((r for r in rows if r["share"] == share and r["finalists"] == finalists and r["test"] == test
                     and r["scenario"] == scenario and r["discordance"] == d), None)

    out = []
    for d in sorted({r["discordance"] for r in rows}):
        parts = []
        for share, finalists, test, name in ((0.6, 1, "exact sign", "the default (60% held back, 1 finalist, exact sign test)"),
                                             (0.5, 2, "exact sign", "the design before (50%, 2 finalists)"),
                                             (0.6, 1, "mid-p sign", "the mid-p sign test (rejected)")):
            worst = [r["false_ship"] for r in rows if r["share"] == share and r["finalists"] == finalists
                     and r["test"] == test and r["discordance"] == d]
            power = cell(share, finalists, test, "one +0.10", d)
            if worst and power:
                parts.append(f"{name}: false ship at most {max(worst):.3f}, power {power['power']:.2f}")
        if parts:
            out.append(f"- {d:.0%} of answers differ from the baseline's: " + "; ".join(parts) + ".")
    return out


def write(args, argv, rows: list[dict], real: list[dict]) -> None:
    command = "python benchmarks/confirm_bench.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    lines = ["## The confirmation: false ships and power, by design", "",
             f"Command: `{command.strip()}`  ",
             f"Machine: {machine()}. Val of a 400-row file under the default split: {N_VAL} examples, split into the "
             f"search part and the held-back part by the share. {args.candidates} candidates per search, {args.reps} "
             f"replicates per cell, one-sided level {args.level}. Baseline accuracy 0.5.", "",
             "Reading (false ship: a result that is not truly better replaces the baseline, worst case over the "
             "scenarios; power: a search with one truly +0.10 candidate ships it):", "", *reading(rows), "",
             "| discordance | scenario | held back | n confirm | finalists | test | false ship | power (+0.10 shipped) | mean true gain shipped |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['discordance']} | {r['scenario']} | {r['share']} | {r['n_confirm']} | {r['finalists']} | "
                     f"{r['test']} | {r['false_ship']:.3f} | {r['power']:.3f} | {r['mean_gain']:+.4f} |")
    if real:
        lines += ["", "On the shared tasks (real answers: pairs of a run's baseline and a candidate on the same test "
                  "examples, resampled as confirmation sets):", "",
                  "| held back | n confirm | test | pairs not better | false ship | pairs better by >= 0.10 | power |",
                  "|---|---|---|---|---|---|---|"]
        for r in real:
            fs = "—" if r["false_ship"] is None else f"{r['false_ship']:.3f}"
            pw = "—" if r["power"] is None else f"{r['power']:.3f}"
            lines.append(f"| {r['share']} | {r['n_confirm']} | {r['test']} | {r['pairs_not_better']} | {fs} | "
                         f"{r['pairs_better_by_0.10']} | {pw} |")
    write_section("confirmation", "\n".join(lines))
    OUT_JSON.write_text(json.dumps({"simulation": rows, "real": real}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
