"""Similarity backends for 'similar' demos: TF-IDF and the packaged all-MiniLM-L6-v2 embeddings (real
model, offline), and the backend's place in a prompt's identity and a few-shot run."""
import numpy as np
import pytest

from promptlab import planning, results, runs
from promptlab.errors import PromptlabError
from promptlab.prompt import PromptTemplate
from promptlab.similarity import nearest

POOL = ("The hotel room was filthy and the staff rude", "I adore this lovely place, wonderful stay",
        "Stock markets fell sharply today", "The pasta was cold and bland")


@pytest.mark.timeout(300)
def test_minilm_matches_by_meaning_where_tfidf_matches_words():
    query = "Dirty accommodation with impolite employees"  # no content word in common with POOL[0]
    assert nearest(POOL, query, 1, "minilm") == [0]
    assert nearest(POOL, query, 1, "tfidf") != [0]
    assert nearest(POOL, "Shares dropped a lot on Wall Street", 1, "minilm") == [2]
    two = nearest(POOL, query, 2, "minilm")
    assert len(two) == 2 and two[-1] == 0  # most similar last, next to the input
    assert nearest(POOL, query, 2, "minilm") == two  # deterministic


def test_unknown_backend_is_refused():
    with pytest.raises(PromptlabError, match="unknown similarity 'bert'"):
        nearest(POOL, "x", 1, "bert")


def test_backend_is_part_of_the_prompt_identity_and_tfidf_ids_are_unchanged(dataset):
    from promptlab.optimize.demos import similar_pool

    pool = similar_pool(dataset.split("train"), dataset, 12, np.random.default_rng(0))
    tfidf = PromptTemplate("Label it.").with_demos(pool, "chat", similar_k=2)
    legacy = PromptTemplate("Label it.", "{input}", tfidf.demos, "chat", 2)  # as built before the backend existed
    minilm = PromptTemplate("Label it.").with_demos(pool, "chat", similar_k=2, similar_by="minilm")
    assert tfidf.id == legacy.id and minilm.id != tfidf.id
    assert PromptTemplate.from_record(minilm.to_record()) == minilm
    assert "similar_by" not in tfidf.to_record()


@pytest.fixture
def dataset(store, tmp_path):
    from conftest import sentiment_dataset

    return sentiment_dataset(store, tmp_path)


@pytest.mark.timeout(600)
def test_fewshot_run_with_minilm_similarity_stores_and_shows_it(store, dataset):
    import fakes
    from promptlab.models import make_spec

    tgt = make_spec(fakes.script("sim-target", lambda m, p: "positive"), family="qwen", size_b=7)
    cfg = planning.make_config(dataset, tgt, [], strategy="fewshot", methods=["similar"], similarity="minilm",
                           rounds=1, minibatch_size=8, seed=3)
    run_id = runs.create_run(store, cfg)
    runs.execute(store, run_id)
    cands = store.candidates(run_id)
    similar = cands[cands["similar_k"] > 0]
    assert len(similar) and set(similar["similar_by"]) == {"minilm"}
    assert all("nearest (minilm) of" in s for s in results.leaderboard(store, run_id).query("similar_k > 0")["demos_shown"])
    with pytest.raises(PromptlabError, match="similarity must be tfidf or minilm"):
        planning.make_config(dataset, tgt, [], strategy="fewshot", similarity="bert")
