"""The schema as data: an ordered list of migrations, and bringing a DuckDB file up to the newest of them."""
from __future__ import annotations

from pathlib import Path

import duckdb

from promptlab.errors import StoreError

# Ordered: migration i brings the schema from version i to i + 1. Never edit one that has shipped.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE datasets (
        id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL UNIQUE,
        content_hash VARCHAR NOT NULL UNIQUE,
        source VARCHAR,
        input_cols JSON NOT NULL,
        label_col VARCHAR NOT NULL,
        labels JSON NOT NULL,
        n_rows INTEGER NOT NULL,
        fractions JSON NOT NULL,
        split_seed INTEGER NOT NULL,
        report JSON,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE examples (
        dataset_id VARCHAR NOT NULL,
        idx INTEGER NOT NULL,
        fields JSON NOT NULL,
        text VARCHAR NOT NULL,
        label VARCHAR NOT NULL,
        label_norm VARCHAR NOT NULL,
        PRIMARY KEY (dataset_id, idx)
    );
    CREATE TABLE models (
        name VARCHAR PRIMARY KEY,
        spec JSON NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE prompts (
        id VARCHAR PRIMARY KEY,
        system VARCHAR NOT NULL,
        user_template VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE runs (
        id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        dataset_id VARCHAR,
        status VARCHAR NOT NULL,
        config JSON NOT NULL,
        summary JSON,
        error VARCHAR,
        pid INTEGER,
        host VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE steps (
        run_id VARCHAR NOT NULL,
        seq INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        data JSON NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE candidates (
        run_id VARCHAR NOT NULL,
        id INTEGER NOT NULL,
        prompt_id VARCHAR NOT NULL,
        round INTEGER NOT NULL,
        proposer VARCHAR,
        family VARCHAR,
        parents JSON,
        meta_prompt VARCHAR,
        raw_reply VARCHAR,
        status VARCHAR NOT NULL,
        minibatch_score DOUBLE,
        val_score DOUBLE,
        test_score DOUBLE,
        data JSON,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (run_id, id)
    );
    CREATE TABLE evaluations (
        prompt_id VARCHAR NOT NULL,
        model_key VARCHAR NOT NULL,
        dataset_id VARCHAR NOT NULL,
        example_idx INTEGER NOT NULL,
        call_key VARCHAR NOT NULL,
        reply VARCHAR,
        pred VARCHAR,
        parse VARCHAR,
        correct BOOLEAN,
        error VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (prompt_id, model_key, dataset_id, example_idx)
    );
    CREATE SEQUENCE llm_calls_seq;
    CREATE TABLE llm_calls (
        id BIGINT PRIMARY KEY DEFAULT nextval('llm_calls_seq'),
        key VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        api_base VARCHAR,
        request JSON NOT NULL,
        response VARCHAR,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        latency_s DOUBLE,
        cost DOUBLE,
        error VARCHAR,
        error_kind VARCHAR,
        attempts INTEGER,
        run_id VARCHAR,
        purpose VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE INDEX llm_calls_key ON llm_calls (key);
    """,
    """
    CREATE TABLE baselines (
        dataset_id VARCHAR NOT NULL,
        prompt_id VARCHAR NOT NULL,
        note VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (dataset_id, prompt_id)
    );
    """,
    # v3: demonstrations are part of a prompt (JSON list of {text, label, fields, idx}; NULL = none).
    """
    ALTER TABLE prompts ADD COLUMN demos JSON;
    ALTER TABLE prompts ADD COLUMN demo_format VARCHAR;
    """,
    # v4: a prompt may pick, per input, its k nearest demos from its demo pool.
    "ALTER TABLE prompts ADD COLUMN similar_k INTEGER;",
    # v5: studies: a grid of ordinary runs (targets x proposer sets x seeds) analysed together.
    """
    CREATE TABLE studies (
        id VARCHAR PRIMARY KEY,
        dataset_id VARCHAR NOT NULL,
        config JSON NOT NULL,
        config_hash VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE study_runs (
        study_id VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        target VARCHAR NOT NULL,
        proposer_set VARCHAR NOT NULL,
        seed INTEGER NOT NULL,
        PRIMARY KEY (study_id, run_id)
    );
    """,
    # v6: how a prompt's nearest demos are found (tfidf or minilm); NULL when it has no demo pool.
    "ALTER TABLE prompts ADD COLUMN similar_by VARCHAR;",
    # v7: which replica answered a call (a model served by several endpoints).
    "ALTER TABLE llm_calls ADD COLUMN served_by VARCHAR;",
    # v8: every failed attempt of a call ("kind: message"), also when a retry then succeeded.
    "ALTER TABLE llm_calls ADD COLUMN failures JSON;",
    # v9 (tasks beyond labels, semi-automatic search, grading by hand): a dataset's kind and default scoring;
    # a per-example score (and the judge's reasoning) next to each evaluation; the analyst's (and the
    # rule's) decisions in paused rounds; human grades per (prompt, model, example, output).
    """
    ALTER TABLE datasets ADD COLUMN kind VARCHAR;
    ALTER TABLE datasets ADD COLUMN scoring JSON;
    ALTER TABLE evaluations ADD COLUMN score DOUBLE;
    ALTER TABLE evaluations ADD COLUMN detail VARCHAR;
    CREATE TABLE decisions (
        run_id VARCHAR NOT NULL,
        round INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        action VARCHAR NOT NULL,
        candidate_id INTEGER,
        text VARCHAR,
        who VARCHAR NOT NULL,
        note VARCHAR,
        detail JSON,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (run_id, round, seq)
    );
    CREATE TABLE grades (
        dataset_id VARCHAR NOT NULL,
        prompt_id VARCHAR NOT NULL,
        model_key VARCHAR NOT NULL,
        example_idx INTEGER NOT NULL,
        output_hash VARCHAR NOT NULL,
        output VARCHAR,
        grade DOUBLE NOT NULL,
        scale VARCHAR NOT NULL,
        note VARCHAR,
        grader VARCHAR,
        blind BOOLEAN,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (dataset_id, prompt_id, model_key, example_idx, output_hash, scale)
    );
    """,
    # the data's own split (a split column or a test file); NULL: promptlab's seeded split
    "ALTER TABLE examples ADD COLUMN split VARCHAR;",
    # the analyst's choice of a run's result over the decision's ({"candidate_id", "note", "at"}); NULL: the decision's
    "ALTER TABLE runs ADD COLUMN chosen JSON;",
    # v12: a study's kind: 'study' (a grid over proposers and seeds) or 'group' (one search per target model), which
    # share their tables; before, a group was told apart only by its id's prefix, and that fills the existing rows.
    """
    ALTER TABLE studies ADD COLUMN kind VARCHAR;
    UPDATE studies SET kind = CASE WHEN id LIKE 'group-%' THEN 'group' ELSE 'study' END;
    """,
]


def migrate(con: duckdb.DuckDBPyConnection, path: Path, upto: int | None = None) -> int:
    """Apply the migrations the file behind `con` lacks, in order, each with its version in one transaction; returns
    the schema version. `upto` stops at that version (a test builds a file as an older promptlab left it); `path`
    names the file when a newer promptlab wrote it."""
    newest = len(MIGRATIONS) if upto is None else upto
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    version = row[0] or 0
    if version > len(MIGRATIONS):
        raise StoreError(
            f"{path} has schema version {version}, newer than this promptlab ({len(MIGRATIONS)}). "
            "Upgrade promptlab or use another --db."
        )
    for i in range(version, newest):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(MIGRATIONS[i])
            con.execute("INSERT INTO schema_version VALUES (?)", [i + 1])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return max(version, newest)
