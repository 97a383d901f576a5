"""Statistics for comparing prompts on the same held-out examples, across seeds.

- `paired_gain`: the gain of one prompt over another in any metric, with a percentile bootstrap CI
  that resamples examples (the same resample for both prompts: paired) and, when there are several
  seeds, the seeds too (two-level), so seed-to-seed variation widens the interval as it should.
- `paired_test`: a two-sided paired sign-flip (randomization) test of the mean per-example
  difference in correctness, each example's correctness first averaged over the seeds so an example
  counts once however many seeds there are. With one seed the differences are -1/0/+1 and it is
  exactly the exact McNemar (binomial sign) test; with several it tests the same mean the gain
  estimates (a plain sign test on averaged differences would not). Exact up to 16 differing
  examples, else 20,000 seeded random sign flips. The p-value is conditional on the prompts the
  seeds found; the bootstrap CI is what carries the seed-to-seed variation. Only for metrics that
  are a mean of per-example correctness (accuracy, recall:L, specificity:L); for the others
  (macro-F1, MCC, kappa, precision, F1, balanced accuracy) it returns no p-value, and the CI decides.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammaln
from scipy.stats import binomtest, norm, t as student_t

from promptlab.scoring.base import Objective
from promptlab.scoring.labels import Metric


@dataclass(frozen=True)
class Gain:
    mean: float
    ci_low: float
    ci_high: float
    n: int  # examples
    seeds: int


def _as_matrix(preds) -> np.ndarray:
    arr = np.asarray(preds, dtype=object)
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


def paired_gain(metric: Metric, gold: Sequence[str], base: Sequence, best: Sequence, *, n_boot: int = 2000,
                level: float = 0.95, seed: int = 0) -> Gain:
    """metric(best) - metric(base), averaged over seeds. base/best: predictions, one row per seed (or one row)."""
    g = np.asarray(gold, dtype=object)
    a, b = _as_matrix(base), _as_matrix(best)
    if a.shape != b.shape or a.shape[1] != len(g):
        raise ValueError("base and best need the same shape: one row of predictions per seed, one column per example")
    s, n = a.shape
    point = float(np.nanmean([metric.score(g, b[i]) - metric.score(g, a[i]) for i in range(s)]))
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for k in range(n_boot):
        ex = rng.integers(0, n, n)
        seeds = rng.integers(0, s, s) if s > 1 else np.zeros(1, dtype=int)
        gg = g[ex]
        diffs[k] = np.nanmean([metric.score(gg, b[i, ex]) - metric.score(gg, a[i, ex]) for i in seeds])
    alpha = (1 - level) / 2
    lo, hi = np.nanquantile(diffs, [alpha, 1 - alpha]) if np.isfinite(diffs).any() else (np.nan, np.nan)
    def clean(x: float) -> float:  # float noise and -0.0 would print as "-0.000"
        return round(float(x), 12) + 0.0

    return Gain(clean(point), clean(lo), clean(hi), n, s)


def paired_test(metric: Metric, gold: Sequence[str], base: Sequence, best: Sequence, *, n_perm: int = 20000,
                seed: int = 0) -> tuple[float | None, int, int]:
    """(two-sided p-value or None, examples where best is right more often, examples where base is)."""
    g = np.asarray(gold, dtype=object)
    a, b = _as_matrix(base), _as_matrix(best)
    mask = metric.relevant(g)
    d = metric.right(g, b)[:, mask].mean(axis=0) - metric.right(g, a)[:, mask].mean(axis=0)
    pos, neg = int((d > 1e-12).sum()), int((d < -1e-12).sum())
    if not metric.is_mean:
        return None, pos, neg
    return sign_flip_p(d, n_perm=n_perm, seed=seed), pos, neg


def sign_flip_p(d: Sequence[float], *, n_perm: int = 20000, seed: int = 0, alternative: str = "two-sided") -> float:
    """Paired sign-flip (randomization) p-value of per-example differences `d` (zeros carry no information):
    "two-sided", or "greater" (is the mean difference above 0?). Equal magnitudes give the exact binomial
    sign test (McNemar's with 0/1 outcomes)."""
    d = np.asarray(d, dtype=float)
    nz = d[np.abs(d) > 1e-12]
    if not len(nz):
        return 1.0
    pos = int((nz > 0).sum())
    mags = np.abs(nz)
    if np.allclose(mags, mags[0]):
        return float(binomtest(pos, len(nz), 0.5, alternative=alternative).pvalue)
    if alternative == "greater":
        observed, stat = nz.sum() - 1e-9, (lambda sums: sums)
    else:
        observed, stat = abs(nz.sum()) - 1e-9, np.abs
    if len(nz) <= 16:  # every sign pattern
        flips = np.array(list(product((-1.0, 1.0), repeat=len(nz))))
        return float((stat(flips @ mags) >= observed).mean())
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(n_perm, len(nz)))
    return float((1 + (stat(signs @ mags) >= observed).sum()) / (n_perm + 1))


# --- comparing two prompts on the same examples (racing and the confirmation) ------------------------

def _aligned(base_rows, cand_rows):
    """The two evaluations' rows on their shared examples, in the same order."""
    shared = np.intersect1d(base_rows["example_idx"].to_numpy(), cand_rows["example_idx"].to_numpy())
    a = base_rows.set_index("example_idx").loc[shared].reset_index()
    b = cand_rows.set_index("example_idx").loc[shared].reset_index()
    return a, b


def race_bound(metric: Objective, cand_rows, ref_rows, level: float = 0.9, n_boot: int = 300, seed: int = 0
               ) -> tuple[float, float]:
    """(mean difference cand - ref on their shared examples, its upper confidence bound at `level`, one-sided).

    For a mean over examples: a normal bound on the paired per-example differences (identical answers
    give a zero-width bound, so a candidate no different from the reference cannot pass 0). Otherwise a
    paired bootstrap of the metric's difference. Racing drops a candidate whose upper bound is not above 0."""
    a, b = _aligned(ref_rows, cand_rows)
    if not len(a):
        return float("nan"), float("inf")
    ea, eb = metric.per_example(a), metric.per_example(b)
    z = float(norm.ppf(level))
    if ea is not None:
        if not len(ea):
            return float("nan"), float("inf")
        d = eb - ea
        mean = float(d.mean())
        return mean, mean + z * (float(d.std(ddof=1)) / np.sqrt(len(d)) if len(d) > 1 else float("inf"))
    mean = metric.value(b) - metric.value(a)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        ix = rng.integers(0, len(a), len(a))
        diffs.append(metric.value(b.iloc[ix]) - metric.value(a.iloc[ix]))
    diffs = np.asarray(diffs, dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    return float(mean), float(np.quantile(diffs, level)) if len(diffs) else float("inf")


@dataclass(frozen=True)
class Comparison:
    """A candidate against a reference on the same examples: the paired difference, its CI and test."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float | None  # one-sided (is cand better?); None for objectives that are not a mean over examples
    n: int
    level: float
    lower: float = float("nan")  # the one-sided lower confidence bound of diff at `level`
    # The test's null hypothesis is "cand is worse than ref by `margin` or more" (0: "cand is not better"); p_value
    # is for that hypothesis. See `harm_compare`.
    margin: float = 0.0

    @property
    def significant(self) -> bool:
        """A positive difference whose one-sided paired test rejects its null hypothesis at 1 - level: "not better"
        with margin 0, "worse by the margin or more" with a margin (or, without a test, whose one-sided lower bound
        is above -margin). One-sided because the question is directional: the chance of passing a candidate the null
        hypothesis describes stays under 1 - level."""
        if not self.diff > 0:
            return False
        if self.p_value is not None:
            return self.p_value < 1 - self.level
        return self.lower > -self.margin

    @property
    def noninferior(self) -> bool:
        """Shown no worse than ref by `margin` or more at `level`, whatever the sign of the difference (the
        simplification's test against the result: a variant may score a little lower and still pass)."""
        if self.p_value is not None:
            return self.p_value < 1 - self.level
        return self.lower > -self.margin


def paired_mean_ci(ref: Sequence[float], cand: Sequence[float], level: float = 0.95, n_boot: int = 1000,
                   seed: int = 0) -> tuple[float, float]:
    """Two-sided percentile bootstrap CI at `level` of mean(cand) - mean(ref), per-example scores of the same
    examples resampled together (paired). The benchmarks' CIs and `compare`'s for mean objectives."""
    d = np.asarray(cand, dtype=float) - np.asarray(ref, dtype=float)
    if not len(d):
        return float("nan"), float("nan")
    boots = _paired_boots(d, n_boot, np.random.default_rng(seed))
    alpha = (1 - level) / 2
    return float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))


def _paired_boots(d: np.ndarray, n_boot: int, rng) -> np.ndarray:
    return d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)


def compare(metric: Objective, ref_rows, cand_rows, level: float = 0.95, n_boot: int = 1000, seed: int = 0) -> Comparison:
    """Paired comparison of two evaluations of the same examples: cand - ref, a two-sided percentile bootstrap
    CI at `level` over examples (for reading), its one-sided lower bound, and the one-sided paired sign-flip
    test's p-value (is cand better?) for objectives that are a mean over examples."""
    a, b = _aligned(ref_rows, cand_rows)
    n = len(a)
    if not n:
        return Comparison(float("nan"), float("nan"), float("nan"), None, 0, level)
    diff = metric.value(b) - metric.value(a)
    ea, eb = metric.per_example(a), metric.per_example(b)
    rng = np.random.default_rng(seed)
    if ea is not None:
        d = eb - ea
        p = sign_flip_p(d, seed=seed, alternative="greater") if len(d) else None
        boots = _paired_boots(d, n_boot, rng) if len(d) else np.array([np.nan])
    else:
        p = None
        boots = np.asarray([metric.value(b.iloc[ix]) - metric.value(a.iloc[ix])
                            for ix in rng.integers(0, n, (n_boot, n))], dtype=float)
    boots = boots[np.isfinite(boots)]
    alpha = (1 - level) / 2
    lo, hi = (np.quantile(boots, [alpha, 1 - alpha]) if len(boots) else (np.nan, np.nan))
    lower = float(np.quantile(boots, 1 - level)) if len(boots) else float("nan")
    return Comparison(round(float(diff), 12) + 0.0, float(lo), float(hi), p, n, level, lower)


# --- the harm test: is a candidate shown not worse than the reference by `margin` or more? ---------------
#
# The confirmation ships a candidate when the held-back examples show it is not worse than the start by the harm
# margin or more (and it scored higher there): shipping a prompt exactly as good as the start does the analyst no
# harm, so the test bounds the harm that matters (truly worse by the margin) instead of "not better", and gains the
# power that "not better" spends on a nearly harmless error (benchmarks/confirm_bench.py). For answers right or wrong
# the per-example difference is -1, 0 or +1 (a trinomial); with a margin the sign test no longer applies (the null
# then depends on how many answers differ), so the test is Tango's score statistic (Tango 1998, the standard test of
# non-inferiority for paired proportions) with its exact unconditional p-value: the largest tail probability over
# every share of differing answers the null allows, so its level holds at any discordance, small samples included.

EXACT_HARM_MAX_N = 600  # above this the normal approximation of Tango's statistic is used (and is accurate)


def tango_z(wins, losses, n: int, margin: float):
    """Tango's score statistic for H0: P(cand right, ref wrong) - P(ref right, cand wrong) = -margin, at `wins`
    examples where only the candidate is right and `losses` where only the reference is, out of n (arrays welcome).
    Large when the candidate is better than the null says."""
    b, c = np.asarray(wins, dtype=float), np.asarray(losses, dtype=float)
    d = -float(margin)
    a_ = 2.0 * n
    b_ = -b - c + (2.0 * n - b + c) * d
    c_ = -c * d * (1.0 - d)
    q = (-b_ + np.sqrt(np.maximum(b_ * b_ - 4.0 * a_ * c_, 0.0))) / (2.0 * a_)  # restricted MLE of P(only ref right)
    var = n * (2.0 * q + d * (1.0 - d))
    num = b - c - n * d
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 1e-15, num / np.sqrt(np.maximum(var, 1e-300)), np.sign(num) * np.inf)
    return z


@lru_cache(maxsize=32)
def harm_table(n: int, margin: float) -> np.ndarray:
    """p[wins, losses]: the exact unconditional one-sided p-value of Tango's test of H0 "worse by `margin` or more"
    for every outcome of n paired examples (NaN where wins + losses > n). The sup over the nuisance (the share of
    examples where only the reference is right) is taken on a fine grid, denser where discordance is low."""
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = (b + c) <= n
    bs, cs = b[ok], c[ok]
    z = tango_z(bs, cs, n, margin)
    order = np.argsort(-z, kind="stable")
    z_desc = z[order]
    # each outcome's tail: every outcome whose statistic is at least its own (ties included)
    last = np.searchsorted(-z_desc, -z + 1e-9, side="right") - 1
    lo, hi = margin, (1.0 + margin) / 2.0
    grid = np.unique(np.concatenate([np.linspace(lo, hi, 160), lo + np.geomspace(1e-4, max(hi - lo, 2e-4), 80)]))
    grid = grid[(grid >= lo) & (grid <= hi)]  # the ends included: every answer differing is a case like any other
    logfact = gammaln(np.arange(n + 1) + 1.0)  # log k!
    coef = logfact[n] - logfact[bs] - logfact[cs] - logfact[n - bs - cs]
    worst = np.zeros(len(bs))
    for q in grid:  # q: P(only ref right); P(only cand right) = q - margin under H0
        pb, pc = q - margin, q
        pe = 1.0 - pb - pc
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = coef + np.where(bs > 0, bs * np.log(max(pb, 1e-300)), 0.0) + cs * np.log(pc) \
                + np.where(n - bs - cs > 0, (n - bs - cs) * np.log(max(pe, 1e-300)), 0.0)
        tail = np.cumsum(np.exp(logp)[order])
        worst = np.maximum(worst, tail[last])
    out = np.full((n + 1, n + 1), np.nan)
    out[bs, cs] = np.minimum(worst, 1.0)
    return out


def harm_p(wins: int, losses: int, n: int, margin: float) -> float:
    """One-sided p-value of H0 "the candidate is worse than the reference by `margin` or more" (paired, answers right
    or wrong). margin 0: the exact sign test (McNemar), as the confirmation used before the harm margin existed."""
    if margin <= 0:
        return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue) if wins + losses else 1.0
    if n <= EXACT_HARM_MAX_N:
        return float(harm_table(n, round(float(margin), 6))[wins, losses])
    return float(norm.sf(tango_z(wins, losses, n, margin)))


def smallest_shippable_gain(n: int, margin: float, level: float = 0.95) -> float:
    """The smallest gain the decision's test can pass on n examples, even with every changed answer in the
    candidate's favour (wins w, losses 0): min w / n with p(w, 0) < 1 - level. 1.0 when none can."""
    for wins in range(1, n + 1):
        if harm_p(wins, 0, n, margin) < 1 - level:
            return wins / n
    return 1.0


def harm_compare(metric: Objective, ref_rows, cand_rows, margin: float, level: float = 0.95, n_boot: int = 1000,
                 seed: int = 0) -> Comparison:
    """`compare`, but testing H0 "cand is worse than ref by `margin` or more" (p_value and `lower` refer to it):
    Tango's exact test for answers right or wrong, a one-sided t test on per-example scores that are fractions, and
    the bootstrap lower bound for objectives that are not a mean over examples. margin 0 is `compare` itself."""
    if margin <= 0:
        return compare(metric, ref_rows, cand_rows, level, n_boot, seed)
    base = compare(metric, ref_rows, cand_rows, level, n_boot, seed)
    a, b = _aligned(ref_rows, cand_rows)
    ea, eb = metric.per_example(a), metric.per_example(b)
    p = None
    if ea is not None and len(ea):
        d = np.asarray(eb, dtype=float) - np.asarray(ea, dtype=float)
        if np.all(np.isin(np.round(d, 9), (-1.0, 0.0, 1.0))):
            p = harm_p(int((d > 0.5).sum()), int((d < -0.5).sum()), len(d), margin)
        else:
            sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
            shifted = float(d.mean()) + margin
            p = (float(student_t.sf(shifted / (sd / np.sqrt(len(d))), len(d) - 1)) if sd > 0
                 else (0.0 if shifted > 0 else 1.0))
    return Comparison(base.diff, base.ci_low, base.ci_high, p, base.n, level, base.lower, margin)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None), for a family of comparisons."""
    idx = [i for i, p in enumerate(p_values) if p is not None and np.isfinite(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        out[i] = running
    return out


# --- power before a study --------------------------------------------------------------------------

def detectable_gain(n: int, seeds: int = 1, *, discordance: float = 0.3, seed_sd: float = 0.05, level: float = 0.95,
                    power: float = 0.8, contrast: float = 1.0) -> float:
    """The smallest true gain a paired comparison on `n` test examples over `seeds` seeds tells from noise with
    probability `power`, two-sided at `level` (normal approximation of the study's own analysis).

    Per example the difference in correctness is -1, 0 or +1; when a share `discordance` of the answers differ
    between the two prompts and the gain is g, its variance is discordance - g². The seeds share the test
    examples, so they do not add examples: they average out the seed-to-seed spread of the gain (`seed_sd`,
    which prompt each seed's search happened to find). Var(gain) = contrast * ((discordance - g²) / n +
    seed_sd² / seeds); contrast 2 for the difference between two gains (two proposers head to head).
    Solved for g = (z_level + z_power) * sd(g) by root finding (1.0: no gain of any size would show)."""
    if n < 1 or seeds < 1:
        raise ValueError("n and seeds must be at least 1")
    z = norm.ppf(1 - (1 - level) / 2) + norm.ppf(power)

    def short(g: float) -> float:  # > 0 while g is still inside the noise
        return z * (contrast * (max(discordance - g * g, 0.0) / n + seed_sd ** 2 / seeds)) ** 0.5 - g

    return 1.0 if short(1.0) >= 0 else float(brentq(short, 0.0, 1.0, xtol=1e-9))


def power_line(n: int, seeds: int, **assumptions) -> str:
    """The sentence a study shows before it starts: what it can and cannot tell apart."""
    gain = detectable_gain(n, seeds, **assumptions)
    pair = detectable_gain(n, seeds, contrast=2.0, **assumptions)
    d, sd = assumptions.get("discordance", 0.3), assumptions.get("seed_sd", 0.05)
    return (f"With {n} test examples and {seeds} seed{'s' if seeds != 1 else ''}, a gain over the baseline under "
            f"~{gain:.2f} (and a difference between two proposers under ~{pair:.2f}) will not be told from noise "
            f"(80% power at 95%, two-sided; assuming about {d:.0%} of answers change between prompts and a "
            f"seed-to-seed spread of {sd:.2f} in the gain). More test examples shrink the first term, more seeds the "
            "second.")


def level_text(level: float) -> str:
    """'95%', or '97.5%' for a level that is not a whole percent (a decision's second look tests at half the level)."""
    return f"{level:.0%}" if abs(level * 100 - round(level * 100)) < 1e-9 else f"{level:.1%}"
