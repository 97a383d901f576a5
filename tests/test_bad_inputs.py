"""The bad-input corpus (tests/bad_inputs.py) through the CLI and through the dashboard's Datasets page:
a refused file gets one clear message (what is wrong, how to fix it) and leaves the store unchanged; an
accepted one is imported with a note saying what was done. Plus a real 200 MB file."""
import re
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from bad_inputs import CORPUS, big_file
from conftest import ROOT
from promptlab.cli import main
from promptlab.store import Store

IDS = [c.id for c in CORPUS]


def snapshot(path) -> dict:
    store = Store(path)
    out = {t: store._one(f"SELECT count(*) FROM {t}")[0] for t in ("datasets", "examples", "runs", "llm_calls")}
    store.close()
    return out


def test_the_corpus_is_big_and_covers_every_kind():
    assert len(CORPUS) >= 30 and len(set(IDS)) == len(IDS)
    for must in ("cp1251", "mixed-utf8-cp1251", "utf8-bom", "unclosed-quote", "quoted-newlines", "empty", "header-only",
                 "json-object-wrong-shape", "binary-named-csv", "one-label", "missing-label-cells", "huge-cell",
                 "duplicate-rows", "labels-differ-in-case-and-spacing", "numeric-labels"):
        assert must in IDS


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_cli(case, tmp_path, capsys):
    db = tmp_path / "cli.duckdb"
    Store(db).migrate()
    before = snapshot(db)
    path = tmp_path / case.filename
    path.write_bytes(case.make())
    code = main(["datasets", "import", str(path), "--db", str(db)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if case.refused:
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert case.needle.lower() in lines[0].lower(), lines[0]
        assert snapshot(db) == before  # nothing half-written
    else:
        assert code == 0, err
        assert case.needle.lower() in out.lower(), out
        assert snapshot(db)["datasets"] == before["datasets"] + 1


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_dashboard(case, tmp_path, monkeypatch):
    db = tmp_path / "ui.duckdb"
    monkeypatch.setenv("PROMPTLAB_DB", str(db))
    at = AppTest.from_file(str(ROOT / "pages" / "1_Datasets.py"), default_timeout=60).run()
    before = snapshot(db)  # the page stores the demo dataset on first view
    at.file_uploader(key="datasets.upload").set_value((case.filename, case.make(), "application/octet-stream")).run()
    assert not at.exception, at.exception
    refused, needle = case.page or (case.refused, case.needle)
    if refused:
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and needle.lower() in errors[0].lower(), errors
        assert not [b for b in at.button if b.key == "datasets.import"]  # nothing to import
    else:
        assert not at.error, [e.value for e in at.error]
        notes = " ".join(i.value for i in at.info)
        assert needle.lower() in notes.lower(), notes
        at.button(key="datasets.import").click().run()
        assert not at.exception and any("Imported" in s.value for s in at.success)
        assert snapshot(db)["datasets"] == before["datasets"] + 1
        return
    assert snapshot(db) == before


@pytest.fixture(scope="module")
def file_200mb(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "tickets.csv"
    big_file(path, 200)
    return path


def test_a_200mb_file_is_refused_before_it_is_read_cli(file_200mb, tmp_path):
    db = tmp_path / "big.duckdb"
    Store(db).migrate()
    before = snapshot(db)
    proc = subprocess.run([sys.executable, "-m", "promptlab", "datasets", "import", str(file_200mb), "--db", str(db)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert file_200mb.stat().st_size >= 200 * 2**20
    assert re.search(r"tickets.csv: 20\d MB is over the 100 MB limit\. Sample it down", proc.stderr), proc.stderr
    assert snapshot(db) == before


def test_a_200mb_upload_is_refused_in_the_dashboard(file_200mb, tmp_path, monkeypatch):
    db = tmp_path / "ui.duckdb"
    monkeypatch.setenv("PROMPTLAB_DB", str(db))
    at = AppTest.from_file(str(ROOT / "pages" / "1_Datasets.py"), default_timeout=120).run()
    before = snapshot(db)
    at.file_uploader(key="datasets.upload").set_value(("tickets.csv", file_200mb.read_bytes(), "text/csv")).run()
    assert not at.exception
    assert len(at.error) == 1 and "over the 100 MB limit" in at.error[0].value
    assert snapshot(db) == before
    # and the browser never gets that far: Streamlit itself refuses uploads over the same limit
    config = (ROOT / ".streamlit" / "config.toml").read_text()
    assert "maxUploadSize = 100" in config
