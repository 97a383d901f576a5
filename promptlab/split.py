"""The splits and the samples a search draws: a stratified train/val/test assignment, stratified samples and
orders, the held-back share, a subset with another sample's label mix. Frames in, frames out (rows of a Dataset)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from promptlab.errors import DataError

DEFAULT_FRACTIONS = (0.3, 0.35, 0.35)  # train (examples for meta-prompts), val (selection), test (held out)
SPLITS = ("train", "val", "test")


def check_fractions(fractions) -> None:
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"split fractions {tuple(fractions)} must be three positive numbers (train, val, test) that sum to 1")


def split_assignment(label_norms: list[str], fractions=DEFAULT_FRACTIONS, seed: int = 0,
                     names: tuple[str, ...] = SPLITS) -> np.ndarray:
    """Stratified train/val/test assignment, deterministic for a seed.

    Per label, rows are shuffled and cut by the fractions (largest remainder), with at least one row of
    every label in every split. (scikit-learn's StratifiedShuffleSplit can leave a rare label out of a
    split entirely, which would make its recall on test undefined; this guarantees it is present.)
    """
    if names == SPLITS:
        check_fractions(fractions)
    labels = np.asarray(label_norms, dtype=object)
    out = np.empty(len(labels), dtype=object)
    rng = np.random.default_rng(seed)
    for label in sorted(set(label_norms)):
        rows = np.flatnonzero(labels == label)
        rng.shuffle(rows)
        if names != SPLITS and len(rows) < len(names):  # too few to share out (rows a file's own split left blank)
            out[rows] = names[0]
            continue
        counts = _allocate(len(rows), fractions)
        start = 0
        for split, count in zip(names, counts):
            out[rows[start:start + count]] = split
            start += count
    return out


def _allocate(n: int, fractions) -> list[int]:
    if n < len(fractions):
        raise DataError(f"cannot split {n} rows of one label into {len(fractions)} parts")
    exact = [n * f for f in fractions]
    counts = [max(1, int(x)) for x in exact]
    while sum(counts) > n:
        i = max(range(len(counts)), key=lambda j: counts[j] - exact[j])
        counts[i] -= 1
    order = sorted(range(len(counts)), key=lambda j: exact[j] - counts[j], reverse=True)
    k = 0
    while sum(counts) < n:
        counts[order[k % len(order)]] += 1
        k += 1
    return counts


def stratified_sample(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Up to n rows with the label proportions kept (each label at least once when n allows)."""
    if n >= len(frame):
        return frame
    rng = np.random.default_rng(seed)
    groups = {lab: rng.permutation(np.flatnonzero(frame["label_norm"].to_numpy() == lab))
              for lab in sorted(frame["label_norm"].unique())}
    total = len(frame)
    quota = {lab: len(rows) * n / total for lab, rows in groups.items()}
    take = {lab: min(len(groups[lab]), max(1 if n >= len(groups) else 0, int(q))) for lab, q in quota.items()}
    for lab in sorted(quota, key=lambda lab: quota[lab] - int(quota[lab]), reverse=True):
        if sum(take.values()) >= n:
            break
        if take[lab] < len(groups[lab]):
            take[lab] += 1
    while sum(take.values()) > n:
        lab = max(take, key=lambda lab: take[lab])
        take[lab] -= 1
    picked = np.sort(np.concatenate([groups[lab][:k] for lab, k in take.items()]))
    return frame.iloc[picked]


def stratified_order(frame: pd.DataFrame, seed: int = 0, by_label: bool = True) -> pd.DataFrame:
    """The rows in a seeded order whose every prefix keeps the label mix: each label's rows are spread
    evenly along the order (row j of a label with m rows sits near (j + u) / m), so the first 20 of a
    race hold about the same shares as all of it, rare labels included. Without labels: a shuffle."""
    rng = np.random.default_rng([seed, 7])
    if not by_label or frame.empty:
        return frame.iloc[rng.permutation(len(frame))]
    labels = frame["label_norm"].to_numpy()
    keys = np.empty(len(frame))
    for lab in sorted(set(labels)):
        rows = np.flatnonzero(labels == lab)
        rows = rows[rng.permutation(len(rows))]
        keys[rows] = (np.arange(len(rows)) + rng.uniform(0.05, 0.95, len(rows))) / len(rows)
    return frame.iloc[np.argsort(keys, kind="stable")]


def holdout_split(frame: pd.DataFrame, share: float, seed: int = 0, by_label: bool = True
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, held back): `share` of the rows held back, stratified by label when there are labels."""
    n = int(round(len(frame) * share))
    if n <= 0 or len(frame) < 2:
        return frame, frame.iloc[:0]
    if by_label:
        held = stratified_sample(frame, n, seed=seed + 1_000_003)
        # a label whose every row would be held back keeps one for the search (it could not be learned or
        # measured there otherwise: recall of a label with no search rows has no value)
        counts = frame["label_norm"].value_counts()
        whole = held["label_norm"].value_counts()
        gone = [lab for lab, k in whole.items() if k == counts[lab]]
        if gone:
            held = held.drop([held.index[held["label_norm"].to_numpy() == lab][-1] for lab in gone])
    else:
        held = frame.iloc[np.sort(np.random.default_rng([seed, 11]).permutation(len(frame))[:n])]
    return frame.drop(held.index), held


def proportional_subset(frame: pd.DataFrame, like: pd.DataFrame, cap: int | None = None, seed: int = 0,
                        by_label: bool = True) -> pd.DataFrame:
    """The largest subset of `frame` (at most `cap` rows) whose label shares are those of `like`, drawn in a seeded
    order: rows added to a sample keep its label mix (a label missing from `frame` leaves no room for any). Without
    labels: up to `cap` rows in a seeded order."""
    order = frame.iloc[np.random.default_rng([seed, 13]).permutation(len(frame))]
    if not by_label or frame.empty or like.empty:
        return order if cap is None else order.iloc[:cap]
    shares = like["label_norm"].value_counts(normalize=True)
    have = frame["label_norm"].value_counts()
    n = min(int(have.get(lab, 0) / share + 1e-9) for lab, share in shares.items())
    n = n if cap is None else min(n, cap)
    take = {lab: int(math.floor(n * share + 1e-9)) for lab, share in shares.items()}
    if not sum(take.values()):
        return frame.iloc[:0]
    picked = [order[order["label_norm"] == lab].iloc[:k] for lab, k in take.items() if k]
    return pd.concat(picked).sort_index()
