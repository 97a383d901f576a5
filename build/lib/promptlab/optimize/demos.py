"""Choosing demonstrations (few-shot examples) from the train split.

Pure functions of (train rows, labels, rng): the same seed gives the same demos, so a resumed run
replays the same choices. Only train rows are ever used.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from promptlab.data import Dataset
from promptlab.prompt import Demo


def to_demo(row, dataset: Dataset) -> Demo:
    display = dict(zip(dataset.label_norms, dataset.labels))
    fields = row.fields if isinstance(row.fields, dict) else {}
    return Demo(text=str(row.text), label=display.get(row.label_norm, str(row.label)),
                fields=tuple((str(k), str(v)) for k, v in fields.items()), idx=int(row.idx))


def random_demos(train: pd.DataFrame, dataset: Dataset, k: int, rng: np.random.Generator) -> tuple[Demo, ...]:
    """k train examples drawn uniformly at random."""
    if k <= 0 or train.empty:
        return ()
    picked = train.iloc[rng.permutation(len(train))[: min(k, len(train))]]
    return tuple(to_demo(r, dataset) for r in picked.itertuples())


def stratified_demos(train: pd.DataFrame, dataset: Dataset, k: int | None, rng: np.random.Generator) -> tuple[Demo, ...]:
    """Round-robin over the labels (in a random order), one random example each turn, until k.

    k=None means one per label. Demos of the same label are not adjacent, and the last demo's label
    varies with the seed, so the order itself does not favour one answer.
    """
    if train.empty:
        return ()
    groups = {lab: list(rng.permutation(list(g.index))) for lab, g in train.groupby("label_norm", sort=True)}
    order = [lab for lab in rng.permutation(sorted(groups))]
    k = len(order) if k is None else k
    picked = []
    while len(picked) < k and any(groups.values()):
        for lab in order:
            if groups[lab] and len(picked) < k:
                picked.append(groups[lab].pop())
    return tuple(to_demo(r, dataset) for r in train.loc[picked].itertuples())


def bootstrapped_demos(correct: pd.DataFrame, dataset: Dataset, k: int | None,
                       rng: np.random.Generator) -> tuple[Demo, ...]:
    """Stratified demos drawn only from train examples the target already answered correctly with
    the current instruction (DSPy's bootstrapping, for labels: demos the model can 'own')."""
    return stratified_demos(correct, dataset, k, rng)


def similar_pool(train: pd.DataFrame, dataset: Dataset, size: int, rng: np.random.Generator) -> tuple[Demo, ...]:
    """A stratified pool from which each input is later shown its nearest demos (see PromptTemplate.similar_k)."""
    return stratified_demos(train, dataset, min(size, len(train)), rng)
