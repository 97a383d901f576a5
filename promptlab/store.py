"""Every query promptlab makes (DuckDB), the call cache's included: one job, the SQL of its 14 tables.

The schema is built by promptlab.migrations (its DDL, as an ordered list), and the file is held through
promptlab.lease: the store holds no open connection between calls; each operation takes a cursor on the
process's lease on the file, which takes turns with other processes, and does its work in one transaction.
"""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd

from promptlab import migrations
from promptlab.lease import file_lease

CLONE = Path(__file__).resolve().parent.parent  # the checkout, when promptlab runs from one (app.py beside it)
DEFAULT_DB = CLONE / "data" / "promptlab.duckdb"


def default_db_path() -> Path:
    """$PROMPTLAB_DB; else data/promptlab.duckdb in a checkout (beside the dashboard's app.py); else, for an installed
    package, the user's data folder (~/.local/share/promptlab/promptlab.duckdb), never inside site-packages."""
    if os.environ.get("PROMPTLAB_DB"):
        return Path(os.environ["PROMPTLAB_DB"])
    if (CLONE / "app.py").is_file():
        return DEFAULT_DB
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "promptlab" / "promptlab.duckdb"


@dataclass(frozen=True)
class CachedCall:
    key: str
    response: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost: float | None


def _filtered(sql: str, params: list, **equal) -> tuple[str, list]:
    """`sql` (ending in a WHERE clause) narrowed by `column = value` for each given value that is not None."""
    for column, value in equal.items():
        if value is not None:
            sql += f" AND {column} = ?"
            params = [*params, value]
    return sql, params



class Store:
    """The DuckDB file behind promptlab. Cheap to construct; holds no open connection between calls."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_db_path()
        self._migrated = False
        self._migrate_lock = threading.Lock()

    # --- connections ------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside one transaction: committed on success, rolled back on any exception."""
        self.migrate()
        with file_lease(self.path).cursor() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _all(self, sql: str, params: list | tuple = ()) -> list[tuple]:
        with self.transaction() as con:
            return con.execute(sql, params).fetchall()

    def _one(self, sql: str, params: list | tuple = ()) -> tuple | None:
        with self.transaction() as con:
            return con.execute(sql, params).fetchone()

    def _df(self, sql: str, params: list | tuple = ()) -> pd.DataFrame:
        with self.transaction() as con:
            return con.execute(sql, params).df()

    # --- migrations --------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations in order (promptlab.migrations; once per Store); returns the schema version."""
        if self._migrated:
            return len(migrations.MIGRATIONS)
        with self._migrate_lock:
            with file_lease(self.path).cursor() as con:
                migrations.migrate(con, self.path)
            self._migrated = True
        return len(migrations.MIGRATIONS)

    def close(self) -> None:
        """Release the file now (instead of after the idle delay)."""
        file_lease(self.path).close()

    def schema_version(self) -> int:
        return self._one("SELECT max(version) FROM schema_version")[0]

    # --- datasets ----------------------------------------------------------------------------------

    def dataset_id_by_hash(self, content_hash: str) -> str | None:
        row = self._one("SELECT id FROM datasets WHERE content_hash = ?", [content_hash])
        return row[0] if row else None

    def dataset_name_taken(self, name: str) -> bool:
        return self._one("SELECT 1 FROM datasets WHERE name = ?", [name]) is not None

    def insert_dataset(self, ds, dataset_id: str, source: str) -> None:
        """Insert a dataset row and all its examples in one transaction (all or nothing)."""
        examples = pd.DataFrame({
            "dataset_id": dataset_id,
            "idx": ds.frame["idx"].astype("int32"),
            "fields": [json.dumps(f, ensure_ascii=False) for f in ds.frame["fields"]],
            "text": ds.frame["text"],
            "label": ds.frame["label"],
            "label_norm": ds.frame["label_norm"],
            "split": ds.frame["given_split"] if "given_split" in ds.frame.columns else None,
        })
        with self.transaction() as con:
            con.execute(
                "INSERT INTO datasets (id, name, content_hash, source, input_cols, label_col, labels, n_rows,"
                " fractions, split_seed, report, kind, scoring) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [dataset_id, ds.name, ds.content_hash, source, json.dumps(list(ds.input_cols)), ds.label_col,
                 json.dumps(list(ds.labels), ensure_ascii=False), ds.n, json.dumps(list(ds.fractions)),
                 ds.split_seed, json.dumps(ds.report.to_dict(), ensure_ascii=False), ds.kind,
                 json.dumps(ds.scoring or {}, ensure_ascii=False)],
            )
            con.register("new_examples", examples)
            con.execute(
                "INSERT INTO examples (dataset_id, idx, fields, text, label, label_norm, split) "
                "SELECT dataset_id, idx, fields, text, label, label_norm, split::VARCHAR FROM new_examples"
            )
            con.unregister("new_examples")

    def dataset_row(self, name_or_id: str) -> dict | None:
        with self.transaction() as con:
            cur = con.execute(
                "SELECT id, name, content_hash, source, input_cols, label_col, labels, n_rows, fractions,"
                " split_seed, report, created_at, kind, scoring FROM datasets WHERE id = ? OR name = ?"
                " ORDER BY (id = ?) DESC LIMIT 1",
                [name_or_id, name_or_id, name_or_id],
            )
            row = cur.fetchone()
            if row is None:
                return None
            cols = [d[0] for d in cur.description]
        rec = dict(zip(cols, row))
        for k in ("input_cols", "labels", "fractions", "report", "scoring"):
            rec[k] = json.loads(rec[k]) if rec[k] is not None else None
        rec["kind"] = rec["kind"] or "labels"
        return rec

    def set_dataset_scoring(self, dataset_id: str, scoring: dict) -> None:
        with self.transaction() as con:
            con.execute("UPDATE datasets SET scoring = ? WHERE id = ?", [json.dumps(scoring, ensure_ascii=False), dataset_id])

    def dataset_examples(self, dataset_id: str) -> pd.DataFrame:
        frame = self._df(
            "SELECT idx, fields, text, label, label_norm, split AS given_split FROM examples WHERE dataset_id = ?"
            " ORDER BY idx",
            [dataset_id],
        )
        if frame["given_split"].isna().all():  # promptlab's seeded split
            frame = frame.drop(columns=["given_split"])
        else:
            frame["given_split"] = frame["given_split"].fillna("").astype(object)
        frame["fields"] = [json.loads(f) for f in frame["fields"]]
        frame["idx"] = frame["idx"].astype("int64")
        return frame

    def list_datasets(self) -> pd.DataFrame:
        return self._df(
            "SELECT id, name, coalesce(kind, 'labels') AS kind, n_rows, label_col, input_cols, labels, source, created_at"
            " FROM datasets ORDER BY created_at"
        )

    def delete_dataset(self, dataset_id: str) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM baselines WHERE dataset_id = ?", [dataset_id])
            con.execute("DELETE FROM grades WHERE dataset_id = ?", [dataset_id])
            con.execute("DELETE FROM examples WHERE dataset_id = ?", [dataset_id])
            con.execute("DELETE FROM datasets WHERE id = ?", [dataset_id])

    # --- models ------------------------------------------------------------------------------------

    def save_model(self, name: str, spec: dict) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM models WHERE name = ?", [name])
            con.execute("INSERT INTO models (name, spec) VALUES (?, ?)", [name, json.dumps(spec)])

    def model_record(self, name: str) -> dict | None:
        row = self._one("SELECT spec FROM models WHERE name = ?", [name])
        return json.loads(row[0]) if row else None

    def list_models(self) -> list[tuple[str, dict]]:
        return [(n, json.loads(s)) for n, s in self._all("SELECT name, spec FROM models ORDER BY name")]

    def delete_model(self, name: str) -> bool:
        with self.transaction() as con:
            found = con.execute("SELECT 1 FROM models WHERE name = ?", [name]).fetchone() is not None
            con.execute("DELETE FROM models WHERE name = ?", [name])
        return found

    # --- prompts -----------------------------------------------------------------------------------

    def save_prompt(self, prompt_id: str, system: str, user_template: str, demos: list | None = None,
                    demo_format: str | None = None, similar_k: int = 0, similar_by: str = "tfidf") -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT INTO prompts (id, system, user_template, demos, demo_format, similar_k, similar_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [prompt_id, system, user_template, json.dumps(demos, ensure_ascii=False) if demos else None,
                 demo_format if demos else None, similar_k or None, similar_by if similar_k else None],
            )

    def save_baseline(self, dataset_id: str, prompt_id: str, system: str, user_template: str, note: str = "") -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT INTO prompts (id, system, user_template) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [prompt_id, system, user_template],
            )
            con.execute(
                "INSERT INTO baselines (dataset_id, prompt_id, note) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [dataset_id, prompt_id, note],
            )

    def baselines(self, dataset_id: str) -> list[tuple[str, str, str]]:
        """(prompt_id, system, user) of the prompts saved as baselines for a dataset, oldest first."""
        return [tuple(r) for r in self._all(
            "SELECT p.id, p.system, p.user_template FROM baselines b JOIN prompts p ON p.id = b.prompt_id"
            " WHERE b.dataset_id = ? ORDER BY b.created_at", [dataset_id])]

    # --- the call cache ----------------------------------------------------------------------------

    def cached_calls(self, keys: list[str]) -> dict[str, CachedCall]:
        """The latest successful call for each key that has one (failed calls are never served)."""
        if not keys:
            return {}
        frame = pd.DataFrame({"key": list(dict.fromkeys(keys))})
        with self.transaction() as con:
            con.register("wanted", frame)
            rows = con.execute(
                "SELECT c.key, arg_max(c.response, c.id), arg_max(c.prompt_tokens, c.id),"
                " arg_max(c.completion_tokens, c.id), arg_max(c.latency_s, c.id), arg_max(c.cost, c.id)"
                " FROM llm_calls c JOIN wanted w ON c.key = w.key WHERE c.error IS NULL GROUP BY c.key"
            ).fetchall()
            con.unregister("wanted")
        return {r[0]: CachedCall(r[0], r[1] or "", r[2] or 0, r[3] or 0, r[4] or 0.0, r[5]) for r in rows}

    def record_call(self, key: str, request: dict, completion, run_id: str | None = None, purpose: str = "") -> None:
        """Commit one finished call (success or failure) at once."""
        with self.transaction() as con:
            con.execute(
                "INSERT INTO llm_calls (key, model, api_base, request, response, prompt_tokens, completion_tokens,"
                " latency_s, cost, error, error_kind, attempts, run_id, purpose, served_by, failures)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [key, request["model"], request.get("api_base"), json.dumps(request, ensure_ascii=False),
                 completion.text if completion.ok else None, completion.prompt_tokens, completion.completion_tokens,
                 completion.latency_s, completion.cost, completion.error, completion.error_kind, completion.attempts,
                 run_id, purpose, completion.served_by,
                 json.dumps(list(completion.failures), ensure_ascii=False) if completion.failures else None],
            )

    def call_stats(self, run_id: str | None = None) -> dict:
        where, params = ("WHERE run_id = ?", [run_id]) if run_id else ("", [])
        row = self._one(
            f"SELECT count(*), count(*) FILTER (WHERE error IS NOT NULL), coalesce(sum(prompt_tokens), 0),"
            f" coalesce(sum(completion_tokens), 0), sum(cost) FROM llm_calls {where}",
            params,
        )
        return {"calls": row[0], "errors": row[1], "prompt_tokens": row[2], "completion_tokens": row[3], "cost": row[4]}

    def failure_stats(self, run_id: str | None = None) -> dict:
        """Failed attempts by kind (retried or final), and calls that failed for good."""
        where, params = ("AND run_id = ?", [run_id]) if run_id else ("", [])
        kinds = dict(self._all(
            "SELECT split_part(f, ':', 1) AS kind, count(*) FROM (SELECT unnest(failures::VARCHAR[]) AS f FROM llm_calls"
            " WHERE failures IS NOT NULL " + where + ") GROUP BY 1 ORDER BY 1", params))
        row = self._one("SELECT count(*) FILTER (WHERE error IS NOT NULL), coalesce(max(attempts), 0),"
                        " count(*) FILTER (WHERE failures IS NOT NULL AND error IS NULL) FROM llm_calls WHERE true " + where,
                        params)
        return {"failed_attempts": kinds, "failed_calls": row[0], "max_attempts": row[1], "recovered_calls": row[2]}

    def repeated_calls(self, run_id: str | None = None) -> int:
        """Successful calls made although the same request had already succeeded: work done twice.
        (Failed calls are retried on purpose and are not counted.)"""
        where, params = ("AND c.run_id = ?", [run_id]) if run_id else ("", [])
        return self._one(
            "SELECT count(*) FROM llm_calls c WHERE c.error IS NULL " + where +
            " AND EXISTS (SELECT 1 FROM llm_calls e WHERE e.key = c.key AND e.error IS NULL AND e.id < c.id)",
            params,
        )[0]

    def served_by(self, run_id: str | None = None) -> dict[str, int]:
        """Calls per endpoint that answered them."""
        where, params = ("WHERE run_id = ?", [run_id]) if run_id else ("", [])
        return dict(self._all(f"SELECT coalesce(served_by, 'in-process'), count(*) FROM llm_calls {where} GROUP BY 1"
                              " ORDER BY 1", params))

    # --- evaluations -------------------------------------------------------------------------------

    def save_evaluations(self, rows: pd.DataFrame) -> None:
        """Upsert per-example rows (prompt × model × example)."""
        if rows.empty:
            return
        with self.transaction() as con:
            con.register("new_evals", rows)
            con.execute(
                "INSERT OR REPLACE INTO evaluations (prompt_id, model_key, dataset_id, example_idx, call_key, reply,"
                " pred, parse, correct, error, score, detail) SELECT prompt_id, model_key, dataset_id, example_idx,"
                " call_key, reply, pred, parse, correct, error, score, detail FROM new_evals"
            )
            con.unregister("new_evals")

    def evaluations(self, prompt_id: str, model_key: str, dataset_id: str) -> pd.DataFrame:
        return self._df(
            "SELECT example_idx, call_key, reply, pred, parse, correct, error, score, detail FROM evaluations"
            " WHERE prompt_id = ? AND model_key = ? AND dataset_id = ? ORDER BY example_idx",
            [prompt_id, model_key, dataset_id],
        )

    def prompt_costs(self, prompt_ids: list[str], model_key: str, dataset_id: str, idx=None) -> pd.DataFrame:
        """Per prompt, what its stored calls for one model on a dataset cost (optionally only on the examples in
        `idx`): calls, mean prompt and completion tokens, median latency, mean price (over the calls with a known
        price) and how many had one. A call answered from the cache counts with the call that answered it."""
        cols = ["prompt_id", "calls", "prompt_tokens", "completion_tokens", "latency_s", "price", "priced"]
        if not len(prompt_ids):
            return pd.DataFrame(columns=cols)
        wanted = pd.DataFrame({"prompt_id": list(dict.fromkeys(prompt_ids))})
        examples = pd.DataFrame({"example_idx": sorted({int(i) for i in idx})}) if idx is not None else None
        with self.transaction() as con:
            con.register("wanted_prompts", wanted)
            where = ""
            if examples is not None:
                con.register("wanted_examples", examples)
                where = " AND e.example_idx IN (SELECT example_idx FROM wanted_examples)"
            frame = con.execute(
                "WITH ev AS (SELECT e.prompt_id, e.call_key FROM evaluations e JOIN wanted_prompts w"
                " ON e.prompt_id = w.prompt_id WHERE e.model_key = ? AND e.dataset_id = ?" + where + "),"
                " c AS (SELECT key, arg_max(prompt_tokens, id) AS pt, arg_max(completion_tokens, id) AS ct,"
                " arg_max(latency_s, id) AS lat, arg_max(cost, id) AS cost FROM llm_calls"
                " WHERE key IN (SELECT call_key FROM ev) AND error IS NULL GROUP BY key)"
                " SELECT ev.prompt_id, count(*) AS calls, avg(c.pt) AS prompt_tokens, avg(c.ct) AS completion_tokens,"
                " median(c.lat) AS latency_s, avg(c.cost) AS price, count(c.cost) AS priced"
                " FROM ev JOIN c ON c.key = ev.call_key GROUP BY ev.prompt_id",
                [model_key, dataset_id]).df()
            con.unregister("wanted_prompts")
            if examples is not None:
                con.unregister("wanted_examples")
        return frame[cols]

    # --- runs --------------------------------------------------------------------------------------

    def create_run(self, run_id: str, kind: str, dataset_id: str | None, config: dict) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT INTO runs (id, kind, dataset_id, status, config, pid, host) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                [run_id, kind, dataset_id, json.dumps(config, ensure_ascii=False), os.getpid(), os.uname().nodename],
            )

    # --- studies -----------------------------------------------------------------------------------

    def create_study(self, study_id: str, dataset_id: str, config: dict, config_hash: str, members: list[dict],
                     kind: str = "study") -> None:
        """The study and all its runs in one transaction: a study is never half-created. `kind`: 'study' (a grid
        over proposers and seeds) or 'group' (one search per target model, promptlab.group)."""
        with self.transaction() as con:
            con.execute("INSERT INTO studies (id, dataset_id, config, config_hash, kind) VALUES (?, ?, ?, ?, ?)",
                        [study_id, dataset_id, json.dumps(config, ensure_ascii=False), config_hash, kind])
            for m in members:
                con.execute(
                    "INSERT INTO runs (id, kind, dataset_id, status, config, pid, host) VALUES (?, 'optimize', ?, 'created', ?, ?, ?)",
                    [m["run_id"], dataset_id, json.dumps(m["config"], ensure_ascii=False), os.getpid(), os.uname().nodename],
                )
                con.execute("INSERT INTO study_runs (study_id, run_id, target, proposer_set, seed) VALUES (?, ?, ?, ?, ?)",
                            [study_id, m["run_id"], m["target"], m["proposer_set"], m["seed"]])

    def study_by_hash(self, config_hash: str) -> str | None:
        row = self._all("SELECT id FROM studies WHERE config_hash = ? ORDER BY created_at DESC LIMIT 1", [config_hash])
        return row[0][0] if row else None

    def study_row(self, study_id: str) -> dict | None:
        rows = self._all("SELECT id, dataset_id, config, created_at, kind FROM studies WHERE id = ?", [study_id])
        if not rows:
            return None
        r = rows[0]
        return {"id": r[0], "dataset_id": r[1], "config": json.loads(r[2]), "created_at": r[3], "kind": r[4]}

    def study_members(self, study_id: str) -> pd.DataFrame:
        return self._df(
            "SELECT s.run_id, s.target, s.proposer_set, s.seed, r.status, r.summary FROM study_runs s"
            " JOIN runs r ON r.id = s.run_id WHERE s.study_id = ? ORDER BY s.target, s.proposer_set, s.seed", [study_id],
        )

    def list_studies(self, groups: bool = False) -> pd.DataFrame:
        """Studies (grids over proposers and seeds), or with `groups` the multi-target jobs (one search per model,
        promptlab.group), which share their tables and are told apart by their kind."""
        return self._df(
            "SELECT st.id, d.name AS dataset, st.created_at, count(*) AS runs,"
            " count(*) FILTER (WHERE r.status = 'finished') AS finished"
            " FROM studies st JOIN study_runs s ON s.study_id = st.id JOIN runs r ON r.id = s.run_id"
            " LEFT JOIN datasets d ON d.id = st.dataset_id WHERE st.kind = ?"
            " GROUP BY st.id, d.name, st.created_at ORDER BY st.created_at DESC", ["group" if groups else "study"]
        )

    def finish_run(self, run_id: str, status: str, summary: dict | None = None, error: str | None = None) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET status = ?, summary = ?, error = ?, updated_at = current_timestamp WHERE id = ?",
                [status, json.dumps(summary, ensure_ascii=False) if summary is not None else None, error, run_id],
            )

    def list_runs(self) -> pd.DataFrame:
        return self._df(
            "SELECT r.id, r.kind, d.name AS dataset, r.status, r.created_at, r.updated_at, r.summary"
            " FROM runs r LEFT JOIN datasets d ON d.id = r.dataset_id ORDER BY r.created_at DESC"
        )

    def finished_run_with_config(self, config: dict) -> str | None:
        """The newest finished run whose stored config is this one (benchmarks reuse it)."""
        return self._run_with_config(config, finished=True)

    def unfinished_run_with_config(self, config: dict) -> str | None:
        """The newest run with this config that did not finish (a stopped benchmark resumes it)."""
        return self._run_with_config(config, finished=False)

    def _run_with_config(self, config: dict, finished: bool) -> str | None:
        # Compared as values, not as text: a release that declares the same settings in another order stores the
        # same config with its keys in another order, and that run is still this one.
        want = json.loads(json.dumps(config, ensure_ascii=False))
        rows = self._all("SELECT id, config, status = 'finished' FROM runs WHERE dataset_id = ? ORDER BY created_at DESC",
                         [config.get("dataset_id")])
        return next((run_id for run_id, text, done in rows if done == finished and json.loads(text) == want), None)

    def run_row(self, run_id: str) -> dict | None:
        with self.transaction() as con:
            cur = con.execute(
                "SELECT id, kind, dataset_id, status, config, summary, error, pid, host, created_at, updated_at, chosen"
                " FROM runs WHERE id = ?", [run_id],
            )
            row = cur.fetchone()
            cols = [d[0] for d in cur.description]
        if row is None:
            return None
        rec = dict(zip(cols, row))
        rec["config"] = json.loads(rec["config"])
        rec["summary"] = json.loads(rec["summary"]) if rec["summary"] else None
        rec["chosen"] = json.loads(rec["chosen"]) if rec["chosen"] else None
        return rec

    def choose_result(self, run_id: str, choice: dict | None) -> None:
        """Record the analyst's choice of the run's result ({"candidate_id", "note", "at"}), or clear it (None)."""
        with self.transaction() as con:
            con.execute("UPDATE runs SET chosen = ?, updated_at = current_timestamp WHERE id = ?",
                        [json.dumps(choice) if choice else None, run_id])

    def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET status = ?, error = ?, pid = ?, host = ?, updated_at = current_timestamp WHERE id = ?",
                [status, error, os.getpid(), os.uname().nodename, run_id],
            )

    def running_runs(self) -> list[tuple[str, int | None, str | None]]:
        return [tuple(r) for r in self._all("SELECT id, pid, host FROM runs WHERE status = 'running'")]

    def mark_interrupted(self, run_id: str) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET status = 'interrupted', updated_at = current_timestamp WHERE id = ? AND status = 'running'",
                [run_id],
            )

    # --- steps and candidates ----------------------------------------------------------------------

    def step_count(self, run_id: str) -> int:
        return self._one("SELECT count(*) FROM steps WHERE run_id = ?", [run_id])[0]

    def step_kinds(self, run_id: str) -> list[str]:
        return [r[0] for r in self._all("SELECT kind FROM steps WHERE run_id = ? ORDER BY seq", [run_id])]

    def save_step(self, run_id: str, seq: int, kind: str, data: dict, candidate: dict | None = None) -> None:
        """Commit one step, and the candidate row it creates or updates, in one transaction."""
        with self.transaction() as con:
            con.execute(
                "INSERT INTO steps (run_id, seq, kind, data) VALUES (?, ?, ?, ?)",
                [run_id, seq, kind, json.dumps(data, ensure_ascii=False, default=str)],
            )
            con.execute("UPDATE runs SET updated_at = current_timestamp WHERE id = ?", [run_id])
            if candidate is not None:
                self._upsert_candidate(con, run_id, candidate)

    @staticmethod
    def _upsert_candidate(con, run_id: str, c: dict) -> None:
        exists = con.execute("SELECT 1 FROM candidates WHERE run_id = ? AND id = ?", [run_id, c["id"]]).fetchone()
        if exists is None:
            con.execute(
                "INSERT INTO candidates (run_id, id, prompt_id, round, proposer, family, parents, meta_prompt,"
                " raw_reply, status, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, c["id"], c["prompt_id"], c["round"], c["proposer"], c["family"], json.dumps(c["parents"]),
                 c["meta_prompt"], c["raw_reply"], "proposed",
                 json.dumps({"text": c["text"], "system": c["system"], "user": c["user"],
                             **({"demos": c["demos"], "demo_format": c.get("demo_format", "chat"),
                                 "similar_k": c.get("similar_k", 0),
                                 **({"similar_by": c["similar_by"]} if c.get("similar_by", "tfidf") != "tfidf" else {})}
                                if c.get("demos") else {})},
                            ensure_ascii=False)],
            )
            return
        sets, params = [], []
        for col in ("status", "minibatch_score", "val_score", "test_score"):
            if col in c:
                sets.append(f"{col} = ?")
                params.append(c[col])
        if "extra" in c:
            sets.append("data = json_merge_patch(data, ?)")
            params.append(json.dumps(c["extra"]))
        if sets:
            con.execute(f"UPDATE candidates SET {', '.join(sets)} WHERE run_id = ? AND id = ?", [*params, run_id, c["id"]])

    def steps(self, run_id: str) -> list[dict]:
        rows = self._all("SELECT seq, kind, data, created_at FROM steps WHERE run_id = ? ORDER BY seq", [run_id])
        return [{"seq": r[0], "kind": r[1], **json.loads(r[2]), "created_at": r[3]} for r in rows]

    def latest_meta_parts(self, run_id: str) -> dict | None:
        """The latest proposer call of a run that stored what its meta-prompt showed (ProposalMade.parts), or None."""
        rows = self._all("SELECT data FROM steps WHERE run_id = ? AND kind = 'proposal_made' ORDER BY seq DESC", [run_id])
        for (data,) in rows:
            rec = json.loads(data)
            if rec.get("parts"):
                return rec
        return None

    def candidates(self, run_id: str) -> pd.DataFrame:
        frame = self._df(
            "SELECT id, round, proposer, family, status, minibatch_score, val_score, test_score, prompt_id, parents,"
            " data, meta_prompt, raw_reply, created_at FROM candidates WHERE run_id = ? ORDER BY id",
            [run_id],
        )
        data = [json.loads(d) if d else {} for d in frame["data"]]
        frame["text"] = [d.get("text", "") for d in data]
        frame["system"] = [d.get("system", "") for d in data]
        frame["user"] = [d.get("user", "") for d in data]
        frame["demos"] = [d.get("demos") or [] for d in data]
        frame["demo_format"] = [d.get("demo_format", "chat") for d in data]
        frame["similar_k"] = [d.get("similar_k", 0) for d in data]
        frame["similar_by"] = [d.get("similar_by", "tfidf") for d in data]
        frame["val_ci_low"] = [(d.get("val_ci") or [None, None])[0] for d in data]
        frame["val_ci_high"] = [(d.get("val_ci") or [None, None])[1] for d in data]
        frame["test_ci_low"] = [(d.get("test_ci") or [None, None])[0] for d in data]
        frame["test_ci_high"] = [(d.get("test_ci") or [None, None])[1] for d in data]
        frame["n_val"] = [d.get("n_val") for d in data]
        frame["n_test"] = [d.get("n_test") for d in data]
        frame["n_scored"] = [d.get("n_scored", d.get("n_val")) for d in data]  # val examples it was scored on
        frame["confirm_score"] = [d.get("confirm_score") for d in data]  # on the held-back val examples (finalists)
        frame["n_confirm"] = [d.get("n_confirm") for d in data]
        frame["target_requests"] = [d.get("target_requests") for d in data]
        frame["decision"] = [d.get("decision") for d in data]  # keep / discard, after a round's decisions
        frame["decided_by"] = [d.get("decided_by") for d in data]  # analyst or rule
        return frame.drop(columns=["data"])

    # --- decisions (semi-automatic rounds) ---------------------------------------------------------

    def add_decision(self, run_id: str, round_: int, action: str, candidate_id: int | None, text: str | None,
                     who: str, note: str = "", detail: dict | None = None) -> int:
        """Append one decision for a paused round; returns its sequence number in the round."""
        with self.transaction() as con:
            row = con.execute("SELECT coalesce(max(seq), -1) + 1 FROM decisions WHERE run_id = ? AND round = ?",
                              [run_id, round_]).fetchone()
            con.execute(
                "INSERT INTO decisions (run_id, round, seq, action, candidate_id, text, who, note, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, round_, row[0], action, candidate_id, text, who, note,
                 json.dumps(detail or {}, ensure_ascii=False)],
            )
        return row[0]

    def decisions(self, run_id: str, round_: int | None = None) -> list[dict]:
        sql, params = _filtered("SELECT round, seq, action, candidate_id, text, who, note, detail, created_at"
                                " FROM decisions WHERE run_id = ?", [run_id], round=round_)
        rows = self._all(sql + " ORDER BY round, seq", params)
        return [{"round": r[0], "seq": r[1], "action": r[2], "candidate_id": r[3], "text": r[4], "who": r[5],
                 "note": r[6] or "", "detail": json.loads(r[7]) if r[7] else {}, "created_at": r[8]} for r in rows]

    # --- human grades ------------------------------------------------------------------------------

    def save_grade(self, dataset_id: str, prompt_id: str, model_key: str, example_idx: int, output_hash: str,
                   output: str, grade: float, scale: str, note: str, grader: str, blind: bool) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO grades (dataset_id, prompt_id, model_key, example_idx, output_hash, output,"
                " grade, scale, note, grader, blind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [dataset_id, prompt_id, model_key, int(example_idx), output_hash, output, float(grade), scale, note,
                 grader, bool(blind)],
            )

    def grades(self, dataset_id: str, prompt_id: str | None = None, model_key: str | None = None) -> pd.DataFrame:
        sql, params = _filtered("SELECT dataset_id, prompt_id, model_key, example_idx, output_hash, output, grade, scale,"
                                " note, grader, blind, created_at FROM grades WHERE dataset_id = ?", [dataset_id],
                                prompt_id=prompt_id, model_key=model_key)
        return self._df(sql + " ORDER BY created_at, example_idx", params)

    def run_call_counts(self, run_id: str) -> dict:
        rows = self._all(
            "SELECT purpose, count(*), count(*) FILTER (WHERE error IS NOT NULL), coalesce(sum(prompt_tokens + completion_tokens), 0)"
            " FROM llm_calls WHERE run_id = ? GROUP BY purpose", [run_id],
        )
        return {r[0]: {"calls": r[1], "errors": r[2], "tokens": r[3]} for r in rows}
