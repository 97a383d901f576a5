"""The bad-input corpus (tests/bad_inputs.py) through the CLI and through the dashboard's Datasets page:
a refused file gets one clear message (what is wrong, how to fix it) and leaves the store unchanged; an
accepted one is imported with a note saying what was done. Plus a real 200 MB file, and prompt files that are
no prompt (a dataset, a binary file, a long one) refused by every flag that reads one."""
import json
import re
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

import fakes
from bad_inputs import CORPUS, big_file
from conftest import ROOT
from promptlab.cli import build_parser, main
from promptlab.cli.optimize import request_from
from promptlab.errors import DataError
from promptlab.prompt import PromptTemplate
from promptlab.read import MAX_PROMPT_FILE_BYTES, prompt_text, read_prompt_file
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


# --- prompt files: every flag that reads a prompt from a file refuses a dataset, a binary file or a long one ------

PROMPT = "Classify the ticket as one of: billing, technical, account.\nAnswer with the label only.\n\nTicket: {input}\n"
TABLE = "text,label\n" + "".join(f"my invoice {i} was charged twice,billing\n" for i in range(800))  # ~30 KB
NOT_PROMPTS = [  # (id, file name, bytes, a phrase the refusal names)
    ("csv", "tickets.csv", TABLE.encode(), "looks like a dataset, not a prompt (a .csv file holds rows)"),
    ("jsonl", "tickets.jsonl", b'{"text": "a", "label": "x"}\n', "a .jsonl file holds rows"),
    ("xlsx", "tickets.xlsx", b"PK\x03\x04" + bytes(64), "a .xlsx file holds rows"),
    ("csv-named-txt", "prompt.txt", TABLE.encode(), "its first line names columns 'label', 'text', and 19"),
    ("tsv-named-txt", "prompt.txt", b"question\tanswer\n2+2?\t4\n3+3?\t6\n1+1?\t2\n", "names columns 'answer', 'question', and 3 lines"),
    ("jsonl-named-txt", "prompt.txt", b'{"input": "a", "label": "x"}\n{"input": "b", "label": "y"}\n',
     "a JSON object on every line"),
    ("binary", "prompt.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "a binary file (it has NUL bytes)"),
    ("not-utf8", "prompt.txt", "Определи тональность отзыва: {input}".encode("cp1251"), "not UTF-8 text. Save it as UTF-8"),
    ("over-20kb", "prompt.txt", ("Be brief and answer with the label only. " * 600).encode(), "KB is over the 20 KB"),
]
PROMPT_FLAGS = {  # a command that reads a prompt file, with {f} where the file goes
    "optimize --baseline-file": ["optimize", "--dataset", "{d}", "--target", "{m}", "--baseline-file", "{f}"],
    "optimize --meta-prompt-file": ["optimize", "--dataset", "{d}", "--target", "{m}", "--meta-prompt-file", "{f}"],
    "eval --prompt-file": ["eval", "--dataset", "{d}", "--model", "{m}", "--prompt-file", "{f}"],
    "eval --rubric @FILE": ["eval", "--dataset", "{d}", "--model", "{m}", "--prompt", "x", "--judge", "{m}",
                            "--rubric", "@{f}"],
    "grade --prompt-file": ["grade", "--dataset", "{d}", "--model", "{m}", "--prompt-file", "{f}", "--summary"],
}


@pytest.mark.parametrize("name,content,needle", [c[1:] for c in NOT_PROMPTS], ids=[c[0] for c in NOT_PROMPTS])
def test_a_file_that_is_no_prompt_is_refused_saying_why(tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(f"--baseline-file {path}: ")) as caught:
        read_prompt_file(path, "--baseline-file")
    message = str(caught.value)
    assert needle in message
    assert "promptlab datasets import" in message or "as UTF-8" in message  # and what to do about it


@pytest.mark.parametrize("content", [
    PROMPT.encode(), b"\xef\xbb\xbf" + PROMPT.encode(),  # with a UTF-8 mark
    json.dumps({"system": "Classify the ticket: billing, technical, account.", "user": "{input}"}).encode(),
    "Определи тональность: позитив, негатив.\nОтзыв: {input}".encode(),
    ("Label, text and answer are words a prompt may use, too.\n" * 3).encode(),
    ("x" * MAX_PROMPT_FILE_BYTES).encode(),  # the limit itself is allowed
], ids=["text", "bom", "json", "russian", "column-words", "at-the-limit"])
def test_a_prompt_file_reads_as_before(tmp_path, content):
    path = tmp_path / "prompt.txt"
    path.write_bytes(content)
    assert read_prompt_file(path) == content.decode("utf-8-sig")
    assert prompt_text(content, "upload") == content.decode("utf-8-sig")


def test_a_large_file_is_refused_without_being_read_whole(tmp_path):
    path = tmp_path / "notes.md"
    path.write_bytes(b"# notes\n" + b"a line of prose, not a prompt\n" * 200_000)  # ~6 MB
    with pytest.raises(DataError, match=r"notes.md: 5\d{3}\.\d KB is over the 20 KB a prompt file may hold"):
        read_prompt_file(path)


@pytest.mark.parametrize("flag", PROMPT_FLAGS)
@pytest.mark.parametrize("name,content,needle", [NOT_PROMPTS[0][1:], NOT_PROMPTS[3][1:], NOT_PROMPTS[6][1:]],
                         ids=["csv", "csv-named-txt", "binary"])
def test_cli_refuses_a_prompt_file_that_is_no_prompt(flag, name, content, needle, tmp_path, tiny_csv, capsys):
    db = tmp_path / "cli.duckdb"
    Store(db).migrate()
    before = snapshot(db)
    path = tmp_path / name
    path.write_bytes(content)
    model = fakes.script("prompt-files", lambda m, p: "positive")
    argv = [a.format(d=tiny_csv, m=model, f=path) for a in PROMPT_FLAGS[flag]]
    code = main([*argv, "--db", str(db)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {flag.split()[1]} {path}: ") and needle in lines[0], lines[0]
    assert fakes.count("prompt-files") == 0 and snapshot(db)["runs"] == before["runs"]


def test_cli_takes_a_prompt_file_as_before(tmp_path, tiny_csv, capsys):
    path = tmp_path / "prompt.txt"
    path.write_text(PROMPT, encoding="utf-8")
    seen = []
    model = fakes.script("prompt-file-ok", lambda m, p: seen.append(m[-1]["content"]) or "positive")
    assert main(["eval", "--dataset", str(tiny_csv), "--model", model, "--prompt-file", str(path), "--limit", "3",
                 "--db", str(tmp_path / "ok.duckdb")]) == 0, capsys.readouterr().err
    assert seen and all(s.startswith("Classify the ticket") for s in seen)
    args = build_parser().parse_args(["optimize", "--dataset", str(tiny_csv), "--target", model,
                                      "--baseline-file", str(path)])
    assert request_from(args).baselines == (PromptTemplate.from_file_text(PROMPT),)
