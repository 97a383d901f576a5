"""The store: ordered migrations, all-or-nothing writes, and two processes sharing one file."""
import subprocess
import sys
import textwrap

import duckdb
import pytest

from promptlab.models import Completion
from promptlab import group as G
from promptlab.migrations import MIGRATIONS, migrate
from promptlab.store import Store


def test_migrations_build_the_schema_once(tmp_path):
    s = Store(tmp_path / "m.duckdb")
    assert s.migrate() == len(MIGRATIONS)
    assert s.schema_version() == len(MIGRATIONS)
    s2 = Store(tmp_path / "m.duckdb")  # a second process/instance finds it done
    assert s2.migrate() == len(MIGRATIONS)
    s.close()
    con = duckdb.connect(str(tmp_path / "m.duckdb"))
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    con.close()
    assert {"datasets", "examples", "models", "prompts", "runs", "steps", "candidates", "evaluations", "llm_calls",
            "schema_version"} <= tables


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER)")
    con.execute("INSERT INTO schema_version VALUES (999)")
    con.close()
    with pytest.raises(Exception, match="newer than this promptlab"):
        Store(path).migrate()


def test_failed_transaction_writes_nothing(store):
    with pytest.raises(RuntimeError):
        with store.transaction() as con:
            con.execute("INSERT INTO models (name, spec) VALUES ('m', '{}')")
            raise RuntimeError("crash mid-write")
    assert store.list_models() == []


def test_only_successful_calls_are_served_from_cache(store):
    store.record_call("k1", {"model": "m", "messages": []}, Completion(text="", error="boom", error_kind="server_error"))
    assert store.cached_calls(["k1"]) == {}
    store.record_call("k1", {"model": "m", "messages": []}, Completion(text="ok", prompt_tokens=3))
    assert store.cached_calls(["k1", "k2"])["k1"].response == "ok"


def test_another_process_can_write_while_this_one_uses_the_file(tmp_path):
    path = tmp_path / "shared.duckdb"
    s = Store(path)
    s.migrate()
    child = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(__import__("conftest").ROOT)!r})
        from promptlab.store import Store
        from promptlab.models import Completion
        s = Store({str(path)!r})
        for i in range(20):
            s.record_call(f"child{{i}}", {{"model": "m", "messages": []}}, Completion(text="c"))
        s.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=str(tmp_path))
    for i in range(20):  # this process keeps writing at the same time
        s.record_call(f"parent{i}", {"model": "m", "messages": []}, Completion(text="p"))
    assert proc.wait(timeout=120) == 0
    assert s.call_stats()["calls"] == 40
    s.close()


def test_repeated_calls_count_work_done_twice_but_not_retries_of_failures(store):
    req = {"model": "m", "messages": []}
    store.record_call("a", req, Completion(text="", error="boom", error_kind="server_error"), run_id="r1")
    store.record_call("a", req, Completion(text="ok"), run_id="r1")  # a retry after a failure: not a repeat
    store.record_call("b", req, Completion(text="ok"), run_id="r1")
    assert store.repeated_calls() == 0
    store.record_call("b", req, Completion(text="ok again"), run_id="r2")  # the same request made twice
    assert store.repeated_calls() == 1 and store.repeated_calls("r2") == 1 and store.repeated_calls("r1") == 0


def test_a_database_written_at_schema_v1_upgrades_with_its_rows_intact(tmp_path):
    """A file as the first release wrote it (schema v1, with a dataset, a run, its candidate, an evaluation and a
    cached call) is upgraded in place to the current schema; every row reads back, the new columns read as their
    defaults, and the cache still answers."""
    import json

    import duckdb

    from promptlab.data import stored_dataset

    rows = [("refund me", "billing"), ("app crash", "technical"), ("invoice wrong", "billing"),
            ("login fails", "technical"), ("charged twice", "billing"), ("screen frozen", "technical")]
    v1_rows = [
        ("INSERT INTO datasets (id, name, content_hash, source, input_cols, label_col, labels, n_rows, fractions,"
         " split_seed, report) VALUES ('d1', 'old_tickets', 'h1', 'old.csv', '[\"text\"]', 'label',"
         " '[\"billing\", \"technical\"]', 6, '[0.3, 0.35, 0.35]', 0, NULL)", []),
        *[("INSERT INTO examples VALUES ('d1', ?, ?, ?, ?, ?)",
           [i, json.dumps({"text": t}), t, lab, lab]) for i, (t, lab) in enumerate(rows)],
        ("INSERT INTO prompts (id, system, user_template) VALUES ('p1', 'Route it.', '{input}')", []),
        ("INSERT INTO runs (id, kind, dataset_id, status, config, summary) VALUES ('run-old', 'optimize', 'd1',"
         " 'finished', '{\"seed\": 0}', '{\"best_id\": 1}')", []),
        ("INSERT INTO candidates (run_id, id, prompt_id, round, proposer, family, status, val_score, data)"
         " VALUES ('run-old', 1, 'p1', 0, 'baseline', 'baseline', 'evaluated', 0.5,"
         " '{\"text\": \"Route it.\", \"system\": \"Route it.\", \"user\": \"{input}\"}')", []),
        ("INSERT INTO evaluations (prompt_id, model_key, dataset_id, example_idx, call_key, reply, pred, parse,"
         " correct) VALUES ('p1', 'mk1', 'd1', 0, 'k1', 'billing', 'billing', 'exact', true)", []),
        ("INSERT INTO llm_calls (key, model, request, response, prompt_tokens, completion_tokens, latency_s,"
         " attempts, run_id, purpose) VALUES ('k1', 'fake/x', '{\"model\": \"fake/x\"}', 'billing', 5, 1, 0.1,"
         " 1, 'run-old', 'target')", []),
    ]

    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    con.execute(MIGRATIONS[0])
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    con.execute("INSERT INTO schema_version VALUES (1)")
    for sql, params in v1_rows:
        con.execute(sql, params)
    con.close()

    store = Store(path)
    assert store.migrate() == len(MIGRATIONS) and store.schema_version() == len(MIGRATIONS)
    ds = stored_dataset(store, "old_tickets")
    assert ds.kind == "labels" and not ds.own_split and ds.n == 6 and ds.labels == ("billing", "technical")
    assert sorted(ds.split("train")["idx"].tolist() + ds.split("val")["idx"].tolist()
                  + ds.split("test")["idx"].tolist()) == list(range(6))
    run = store.run_row("run-old")
    assert run["status"] == "finished" and run["config"]["seed"] == 0 and run["summary"]["best_id"] == 1
    cands = store.candidates("run-old")
    assert cands["val_score"].tolist() == [0.5] and cands["text"].tolist() == ["Route it."]
    assert cands["demos"].tolist() == [[]] and cands["similar_k"].tolist() == [0]  # columns added after v1
    ev = store.evaluations("p1", "mk1", ds.id)
    assert ev["pred"].tolist() == ["billing"] and ev["score"].isna().all()
    assert store.cached_calls(["k1"])["k1"].response == "billing"
    assert json.loads(store._one("SELECT request FROM llm_calls WHERE key = 'k1'")[0])["model"] == "fake/x"
    store.close()


def test_a_study_and_a_group_stored_before_studies_had_a_kind_read_back_with_theirs(tmp_path):
    """A file at the schema just before the studies' kind (when a group was told apart from a study by its id's
    prefix alone), holding a study and a group, is migrated: each reads back with its kind, and every reader (the
    lists, the row, is_group) goes by that kind."""
    previous = next(i for i, sql in enumerate(MIGRATIONS) if "ALTER TABLE studies ADD COLUMN kind" in sql)
    path = tmp_path / "before_kind.duckdb"
    con = duckdb.connect(str(path))
    assert migrate(con, path, upto=previous) == previous
    for study_id, run_id in (("study-0123456789", "run-s1"), ("group-0123456789", "run-g1")):
        con.execute("INSERT INTO studies (id, dataset_id, config, config_hash) VALUES (?, 'd1', '{}', ?)",
                    [study_id, "hash-" + study_id])
        con.execute("INSERT INTO runs (id, kind, dataset_id, status, config) VALUES (?, 'optimize', 'd1', 'finished',"
                    " '{}')", [run_id])
        con.execute("INSERT INTO study_runs (study_id, run_id, target, proposer_set, seed) VALUES (?, ?, 't', 'all', 0)",
                    [study_id, run_id])
    con.close()

    store = Store(path)
    assert store.migrate() == len(MIGRATIONS) and store.schema_version() == len(MIGRATIONS)
    assert store.study_row("study-0123456789")["kind"] == "study"
    assert store.study_row("group-0123456789")["kind"] == "group"
    assert store.list_studies()["id"].tolist() == ["study-0123456789"]
    assert store.list_studies(groups=True)["id"].tolist() == ["group-0123456789"]
    assert G.is_group(store, "group-0123456789") and not G.is_group(store, "study-0123456789")
    assert not G.is_group(store, "run-g1")
    store.close()


def test_a_study_and_a_group_are_written_with_their_kind(store):
    """The kind is written when a study or a group is created, so an id without the old prefix still reads right."""
    member = {"run_id": "run-a", "config": {}, "target": "t", "proposer_set": "all", "seed": 0}
    store.create_study("grid-a", "d1", {}, "h-a", [member])
    store.create_study("grid-b", "d1", {}, "h-b", [{**member, "run_id": "run-b"}], kind="group")
    assert [store.study_row(i)["kind"] for i in ("grid-a", "grid-b")] == ["study", "group"]
    assert store.list_studies()["id"].tolist() == ["grid-a"]
    assert store.list_studies(groups=True)["id"].tolist() == ["grid-b"]
