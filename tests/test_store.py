"""The store: ordered migrations, all-or-nothing writes, and two processes sharing one file."""
import subprocess
import sys
import textwrap

import duckdb
import pytest

from promptlab.models import Completion
from promptlab.store import MIGRATIONS, Store


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
