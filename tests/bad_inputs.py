"""A corpus of bad inputs: files people really upload. Each case says whether promptlab must refuse it
(with a message that names the problem and the fix) or accept it with a note saying what it did.

Used by tests/test_bad_inputs.py through both the CLI and the dashboard's Datasets page.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Callable

import pandas as pd


@dataclass(frozen=True)
class Case:
    id: str
    filename: str
    make: Callable[[], bytes]
    refused: bool  # True: an error, and the store is unchanged; False: imported, with a note
    needle: str  # a phrase the error or the note must contain (case-insensitive)
    page: tuple[bool, str] | None = None  # (refused, needle) on the Datasets page, where it differs from the CLI


def _csv(rows: list[str], header: str = "text,label", encoding: str = "utf-8") -> bytes:
    return ("\n".join([header] + rows) + "\n").encode(encoding)


GOOD = [f"great product {i},positive" for i in range(6)] + [f"awful service {i},negative" for i in range(6)]
RU = [f"Отличный отель {i};позитив" for i in range(4)] + [f"Грязный номер {i};негатив" for i in range(4)]


def _mixed_encodings() -> bytes:
    head = _csv(RU[:4], "текст;метка", "utf-8")
    tail = ("\n".join(RU[4:]) + "\n").encode("cp1251")
    return head + tail


def _parquet() -> bytes:
    buf = io.BytesIO()
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}).to_parquet(buf)
    return buf.getvalue()


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00" + bytes(200)
XLSX = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(300)

CORPUS: list[Case] = [
    # --- encoding -------------------------------------------------------------------------------
    Case("cp1251", "reviews.csv", lambda: _csv(RU, "текст;метка", "cp1251"), False, "cp1251"),
    Case("mixed-utf8-cp1251", "mixed.csv", _mixed_encodings, True, "line"),
    Case("utf8-bom", "bom.csv", lambda: b"\xef\xbb\xbf" + _csv(GOOD), False, ""),
    Case("utf16-bom", "utf16.csv", lambda: _csv(GOOD).decode().encode("utf-16"), False, ""),
    Case("latin1-accents", "latin.csv", lambda: _csv([f"très bon café {i},positif" for i in range(4)]
                                                     + [f"mauvais hôtel {i},négatif" for i in range(4)], encoding="latin-1"),
         True, "utf-8"),
    # --- structure ------------------------------------------------------------------------------
    Case("empty", "empty.csv", lambda: b"", True, "empty"),
    Case("whitespace-only", "blank.csv", lambda: b"  \n\n \t\n", True, "empty"),
    Case("header-only", "header.csv", lambda: b"text,label\n", True, "no rows"),
    Case("unclosed-quote", "quote.csv", lambda: b'text,label\n"never closed,positive\nok,negative\n', True, "quote"),
    Case("quoted-newlines", "multi.csv", lambda: _csv(['"line one\nline two",positive'] + GOOD), False, ""),
    Case("ragged-rows", "ragged.csv", lambda: _csv(GOOD + ["one,two,three,four"]), True, "line"),
    Case("one-column", "one.csv", lambda: b"text\n" + b"\n".join(f"row {i}".encode() for i in range(10)), True, "column"),
    Case("json-object-wrong-shape", "data.json", lambda: json.dumps({"rows": 3, "ok": True}).encode(), True, "json"),
    Case("json-list-of-numbers", "nums.json", lambda: json.dumps([1, 2, 3]).encode(), True, "json"),
    Case("json-scalar", "scalar.json", lambda: b'"just a string"', True, "json"),
    Case("jsonl-broken-line", "data.jsonl", lambda: (json.dumps({"text": "a", "label": "x"}) + "\n{not json}\n").encode(),
         True, "line 2"),
    Case("binary-named-csv", "data.csv", lambda: bytes(range(256)) * 40, True, "binary"),
    Case("png-named-csv", "photo.csv", lambda: PNG, True, "binary"),
    Case("parquet-named-csv", "table.csv", _parquet, True, "parquet"),
    Case("xlsx", "sheet.xlsx", lambda: XLSX, True, "export the sheet as csv"),
    Case("xlsx-named-csv", "sheet.csv", lambda: XLSX, True, "binary"),
    Case("unknown-extension", "notes.docx", lambda: _csv(GOOD), True, "unsupported file type"),
    Case("only-blank-rows", "blanks.csv", lambda: b"text,label\n,\n,\n , \n", True, "blank"),
    # --- content --------------------------------------------------------------------------------
    Case("one-label", "same.csv", lambda: _csv([f"text {i},positive" for i in range(10)]), True, "same label"),
    Case("missing-label-cells", "holes.csv", lambda: _csv(GOOD + ["no label here,", "another,"]), True, "no label"),
    Case("empty-inputs", "noinput.csv", lambda: _csv(GOOD + [",positive"]), True, "empty input"),
    # The CLI refuses it as labels and names --kind reference; the page preselects reference answers and imports.
    Case("free-text-label-column", "free.csv", lambda: _csv([f"text {i},comment number {i}" for i in range(40)]),
         True, "--kind reference", page=(False, "")),
    Case("too-few-of-a-label", "rare.csv", lambda: _csv(GOOD + ["odd one,neutral"]), True, "too few"),
    Case("huge-cell", "huge.csv", lambda: _csv(GOOD + [f"{'word ' * 40_000},positive"]), False, "long"),
    Case("duplicate-rows", "dups.csv", lambda: _csv(GOOD + GOOD[:4]), False, "duplicate"),
    Case("conflicting-duplicates", "conflict.csv", lambda: _csv(GOOD + ["great product 0,negative"]), False,
         "different labels"),
    Case("labels-differ-in-case-and-spacing", "case.csv",
         lambda: _csv(GOOD + ["fine,Positive", "meh, positive ", "bad,NEGATIVE"]), False, "merged"),
    Case("numeric-labels", "numeric.csv", lambda: _csv([f"good {i},1" for i in range(5)] + [f"bad {i},0" for i in range(5)]),
         False, ""),
    Case("too-many-rows-of-nothing", "nul.csv", lambda: b"text,label\n" + b"\x00" * 5000, True, "binary"),
]


def big_file(path, size_mb: int = 200) -> None:
    """A well-formed CSV of `size_mb` megabytes, written in chunks."""
    row = b"this is a perfectly ordinary support ticket about an invoice that never arrived,billing\n"
    chunk = row * (1 << 14)
    with open(path, "wb") as f:
        f.write(b"text,label\n")
        written = 0
        while written < size_mb * 1024 * 1024:
            f.write(chunk)
            written += len(chunk)
