"""Reading the files a user has: bytes decoded as text, any table format as a frame of strings, and which of its
columns is the input, the label (or reference answer) and the data's own split.

Every rejection is a `DataError` whose message says what is wrong and what to do about it.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from promptlab.errors import DataError
from promptlab.scoring.reading import normalize_label

INPUT_NAMES = ("input", "text", "sentence", "question", "content", "message", "review", "query", "prompt",
               "текст", "вопрос", "сообщение", "отзыв", "предложение", "ввод")
LABEL_NAMES = ("label", "target", "answer", "class", "category", "labels", "gold", "output", "sentiment", "intent",
               "метка", "класс", "ответ", "категория", "тональность", "таргет")
TEXT_FORMATS = {".csv", ".tsv", ".tab", ".txt", ".jsonl", ".ndjson", ".json"}
FORMATS = TEXT_FORMATS | {".parquet", ".pq"}
SPREADSHEETS = {".xlsx", ".xls", ".ods", ".numbers"}  # refused with a word on exporting them as CSV
MAX_LABELS = 50
# What a dataset's target column holds: a label per row (classification), a reference answer per row
# (scored by a reference scorer or an LLM judge), or nothing (outputs are judged, by a model or by hand).
DATASET_KINDS = ("labels", "reference", "unlabeled")
REFERENCE_NAMES = ("reference", "answer", "expected", "expected_output", "ideal", "target", "output", "gold", "label",
                   "ответ", "эталон")


def max_file_bytes() -> int:
    return int(float(os.environ.get("PROMPTLAB_MAX_FILE_MB", "100")) * 1024 * 1024)


# --- reading ---------------------------------------------------------------------------------------

def decode_text(raw: bytes, filename: str = "file") -> tuple[str, str]:
    """Decode bytes as utf-8, utf-8-sig, then cp1251 (Russian data is first-class). Returns (text, encoding)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="strict") if _is_utf8(raw[3:]) else _bad_utf8(raw, filename), "utf-8-sig"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise DataError(f"{filename}: starts with a UTF-16 mark but is not valid UTF-16. Re-save it as UTF-8.") from None
    if _is_utf8(raw):
        return raw.decode("utf-8"), "utf-8"
    # Not UTF-8. If much of it *is* UTF-8 multibyte text, the file mixes encodings: cp1251 would
    # silently turn those parts into mojibake, so refuse instead of guessing.
    utf8_seqs = len(re.findall(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}", raw))
    high = sum(1 for b in raw if b >= 0x80) or 1
    if utf8_seqs >= 3 and 2 * utf8_seqs / high > 0.3:
        line = _first_bad_utf8_line(raw)
        raise DataError(
            f"{filename}: mixes text encodings (UTF-8 and another, first non-UTF-8 byte on line {line}). "
            "Open it in an editor and save it once as UTF-8."
        )
    text = raw.decode("cp1251", errors="replace")
    controls = sum(1 for ch in text if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\r\n\t"))
    if controls > max(2, len(text) // 200):
        raise DataError(
            f"{filename}: cannot decode the text (tried utf-8, utf-8-sig, cp1251). "
            "If it is a spreadsheet or binary file, export it as CSV in UTF-8."
        )
    # Latin-1 / Windows-1252 text (é, ü, ñ) also decodes as cp1251, into words that mix Latin and
    # Cyrillic letters ('négatif' becomes 'nйgatif'). Real Russian text has almost none of those.
    cyrillic_words = re.findall(r"\w*[\u0400-\u04ff]\w*", text[:200_000])  # a sample is enough
    mixed = [w for w in cyrillic_words if re.search(r"[A-Za-z]", w)]
    if len(mixed) >= 3 and len(mixed) > 0.2 * len(cyrillic_words):
        raise DataError(
            f"{filename}: is not UTF-8, and it does not read as Russian (cp1251) either: it looks like a Western "
            f"European encoding (Latin-1 / Windows-1252; e.g. '{mixed[0][:20]}'). Save it as UTF-8 and upload it again."
        )
    return text, "cp1251"


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _bad_utf8(raw: bytes, filename: str) -> str:
    raise DataError(
        f"{filename}: has a UTF-8 mark (BOM) but invalid UTF-8 on line {_first_bad_utf8_line(raw)}. "
        "Re-save it as UTF-8."
    )


def _first_bad_utf8_line(raw: bytes) -> int:
    try:
        raw.decode("utf-8")
        return 0
    except UnicodeDecodeError as exc:
        return raw[: exc.start].count(b"\n") + 1


def read_table(source: str | Path | bytes, filename: str | None = None) -> pd.DataFrame:
    """Read CSV, TSV, JSONL, JSON (records or BIG-bench task.json) or Parquet into a frame of strings."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        filename = filename or path.name
        if not path.exists():
            raise DataError(f"{path}: no such file. Check the path.")
        if path.is_dir():
            raise DataError(f"{path}: is a folder, not a file. Give the path of a CSV, TSV, JSON(L) or Parquet file.")
        size = path.stat().st_size
        _check_size(size, filename)
        raw = path.read_bytes()
    else:
        raw = bytes(source)
        filename = filename or "upload"
        _check_size(len(raw), filename)
    ext = Path(filename).suffix.lower()
    if ext in SPREADSHEETS:
        raise DataError(f"{filename}: spreadsheets are not read directly. Export the sheet as CSV (UTF-8) and upload that.")
    if not raw.strip():
        raise DataError(f"{filename}: the file is empty. Give a file with a header row and labeled examples.")
    if ext in {".parquet", ".pq"}:
        return _read_parquet(raw, filename)
    if raw[:4] == b"PAR1":
        raise DataError(f"{filename}: this is a Parquet file with the wrong extension. Rename it to .parquet.")
    head = raw[:8192]
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{filename}: looks like a binary file, not text. Export your data as CSV (UTF-8), JSONL or Parquet.")
    text, encoding = decode_text(raw, filename)
    del raw  # a large file: keep one copy of its text, not two
    if ext in {".jsonl", ".ndjson"}:
        frame = _read_jsonl(text, filename)
    elif ext == ".json":
        frame = _read_json(text, filename)
    elif ext in {".tsv", ".tab"}:
        frame = _read_delimited(text, filename, "\t")
    elif ext in {".csv", ".txt", ""}:
        stripped = text.lstrip()
        if ext == "" and stripped[:1] in "[{":
            frame = _read_json(text, filename) if stripped[:1] == "[" or _looks_like_json_doc(stripped) else _read_jsonl(text, filename)
        else:
            frame = _read_delimited(text, filename, None)
    else:
        raise DataError(
            f"{filename}: unsupported file type '{ext}'. Use one of: {', '.join(sorted(FORMATS))}."
        )
    frame = _clean_frame(frame, filename)
    frame.attrs["encoding"] = encoding
    return frame


def _looks_like_json_doc(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def _check_size(size: int, filename: str) -> None:
    limit = max_file_bytes()
    if size > limit:
        raise DataError(
            f"{filename}: {size / 2**20:.0f} MB is over the {limit / 2**20:.0f} MB limit. Sample it down, "
            "or raise the limit with PROMPTLAB_MAX_FILE_MB."
        )


def _sniff_delimiter(text: str) -> str:
    sample = text[:65536]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        first = sample.split("\n", 1)[0]
        counts = {d: first.count(d) for d in ",;\t|"}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _read_delimited(text: str, filename: str, sep: str | None) -> pd.DataFrame:
    sep = sep or _sniff_delimiter(text)
    try:
        return pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False,
            skip_blank_lines=True, engine="c",
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{filename}: no rows or header found. The first line must name the columns.") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().split("\n")[0]
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", detail)
        if m:
            detail = f"line {m.group(2)} has {m.group(3)} fields where the header has {m.group(1)}"
        raise DataError(
            f"{filename}: malformed {'TSV' if sep == chr(9) else 'CSV'}: {detail}. Values that contain the "
            f"separator '{sep}' or line breaks must be in double quotes."
        ) from None


def _read_jsonl(text: str, filename: str) -> pd.DataFrame:
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{filename}: line {n} is not valid JSON ({exc.msg}). Each line must be one JSON object.") from None
        if not isinstance(obj, dict):
            raise DataError(f"{filename}: line {n} is a JSON {type(obj).__name__}, not an object. Each line must be one JSON object like {{\"input\": …, \"label\": …}}.")
        records.append(obj)
    return _records_frame(records, filename)


def _read_json(text: str, filename: str) -> pd.DataFrame:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        if "\n{" in text.strip():
            return _read_jsonl(text, filename)
        raise DataError(f"{filename}: not valid JSON ({exc.msg} at line {exc.lineno}). Fix the file or save it as JSONL.") from None
    if isinstance(doc, dict) and isinstance(doc.get("examples"), list):
        return _read_bigbench(doc, filename)
    if isinstance(doc, dict) and doc and all(isinstance(v, list) for v in doc.values()):
        lengths = {len(v) for v in doc.values()}
        if len(lengths) == 1:
            return _records_frame([dict(zip(doc, row)) for row in zip(*doc.values())], filename)
    if isinstance(doc, list) and all(isinstance(r, dict) for r in doc):
        return _records_frame(doc, filename)
    shape = type(doc).__name__ if not isinstance(doc, list) else "list of " + ", ".join(sorted({type(r).__name__ for r in doc})[:3])
    raise DataError(
        f"{filename}: JSON of the wrong shape ({shape}). Expected a list of records like "
        '[{"input": "...", "label": "..."}], or a BIG-bench task.json with "examples".'
    )


def _read_bigbench(doc: dict, filename: str) -> pd.DataFrame:
    records = []
    for n, ex in enumerate(doc["examples"], 1):
        if not isinstance(ex, dict) or "input" not in ex:
            raise DataError(f"{filename}: BIG-bench example {n} has no 'input'.")
        scores = ex.get("target_scores")
        if isinstance(scores, dict) and scores:
            label = max(scores.items(), key=lambda kv: float(kv[1]))[0]
        elif "target" in ex:
            target = ex["target"]
            label = target[0] if isinstance(target, list) and target else target
        else:
            raise DataError(f"{filename}: BIG-bench example {n} has neither 'target_scores' nor 'target'.")
        records.append({"input": ex["input"], "label": label})
    return _records_frame(records, filename)


def _records_frame(records: list[dict], filename: str) -> pd.DataFrame:
    if not records:
        raise DataError(f"{filename}: contains no records. Give at least a few labeled examples.")
    frame = pd.DataFrame.from_records(records)
    for col in frame.columns:
        frame[col] = frame[col].map(_cell_text)
    return frame


def _cell_text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_parquet(raw: bytes, filename: str) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(io.BytesIO(raw))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a broken file
        raise DataError(f"{filename}: not a readable Parquet file ({type(exc).__name__}). Re-export it, or use CSV.") from None
    for col in frame.columns:
        frame[col] = frame[col].map(_cell_text)
    return _clean_frame(frame, filename)


def _clean_frame(frame: pd.DataFrame, filename: str) -> pd.DataFrame:
    frame = frame.copy()
    frame.columns = [str(c).strip().lstrip("\ufeff") or f"column_{i + 1}" for i, c in enumerate(frame.columns)]
    frame = frame.astype(str)
    if frame.empty:
        raise DataError(f"{filename}: has a header but no rows. Add examples (one per row) below the header.")
    return frame.reset_index(drop=True)


# --- columns and labels ----------------------------------------------------------------------------

def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def is_free_text(counts: Counter, n_rows: int) -> bool:
    """More distinct values than half the rows (and more than a label set has): free text, not labels (such a
    column could never be split by label anyway)."""
    return len(counts) > min(MAX_LABELS, 10) and len(counts) > n_rows // 2


def guess_kind(frame: pd.DataFrame, filename: str = "dataset") -> str:
    """What each row most likely carries: 'reference' when the target column reads as free text (or only a
    reference-named column is there), else 'labels'. The Datasets page preselects it."""
    try:
        _, label_col = detect_columns(frame, filename=filename, kind="labels")
    except DataError:
        try:
            detect_columns(frame, filename=filename, kind="reference")
            return "reference"
        except DataError:
            return "labels"
    values = frame[label_col].dropna().astype(str).str.strip()
    values = values[values != ""]
    return "reference" if is_free_text(Counter(normalize_label(v) for v in values), len(values)) else "labels"


def detect_columns(
    frame: pd.DataFrame, input_cols: list[str] | None = None, label_col: str | None = None, filename: str = "dataset",
    kind: str = "labels",
) -> tuple[list[str], str]:
    """Resolve the input column(s) and the label (or reference) column: the user's choice, else the
    obvious names. An unlabeled dataset has no target column (''). A 'split' column is the data's own split, never
    guessed as an input or a label."""
    columns = [c for c in frame.columns if not is_split_column(c) or c in (input_cols or []) or c == label_col]
    listing = ", ".join(columns)
    if kind not in DATASET_KINDS:
        raise DataError(f"unknown dataset kind '{kind}': use one of {', '.join(DATASET_KINDS)}")
    if kind == "unlabeled":
        for c in input_cols or []:
            if c not in columns:
                raise DataError(f"{filename}: no column '{c}'. Columns are: {listing}. Pick the input column(s) from these.")
        if not input_cols:
            found = _find(columns, INPUT_NAMES)
            input_cols = [found] if found else (columns[:1] if len(columns) == 1 else None)
            if not input_cols:
                raise DataError(
                    f"{filename}: cannot tell which column is the input (columns: {listing}). "
                    "Name it with --input-col (or pick it in the dashboard), or call it 'input'."
                )
        return list(input_cols), ""
    what = "reference answer" if kind == "reference" else "label"
    if label_col is not None and label_col not in columns:
        raise DataError(f"{filename}: no column '{label_col}'. Columns are: {listing}. Pick the label column from these.")
    for c in input_cols or []:
        if c not in columns:
            raise DataError(f"{filename}: no column '{c}'. Columns are: {listing}. Pick the input column(s) from these.")
    label_col = label_col or _find([c for c in columns if c not in (input_cols or [])],
                                   REFERENCE_NAMES if kind == "reference" else LABEL_NAMES)
    if label_col is None:
        known_input = (input_cols or [None])[0] or _find(columns, INPUT_NAMES)
        if len(columns) == 2 and known_input in columns:
            label_col = next(c for c in columns if c != known_input)
        else:
            raise DataError(
                f"{filename}: cannot tell which column holds the {what} (columns: {listing}). "
                f"Name it with --label-col (or pick it in the dashboard), or call it '{'answer' if kind == 'reference' else 'label'}'."
            )
    if not input_cols:
        found = _find([c for c in columns if c != label_col], INPUT_NAMES)
        others = [c for c in columns if c != label_col]
        if found:
            input_cols = [found]
        elif len(others) == 1:
            input_cols = others
        else:
            raise DataError(
                f"{filename}: cannot tell which column is the input (columns: {listing}). "
                "Name it with --input-col (or pick it in the dashboard), or call it 'input'."
            )
    if label_col in input_cols:
        raise DataError(f"{filename}: '{label_col}' cannot be both an input and the {what}. Pick different columns.")
    return list(input_cols), label_col


def is_split_column(column) -> bool:
    """A column named 'split' (any case) holds the data's own split, not an input or a label."""
    return str(column).strip().lower() == "split"


# --- prompt files --------------------------------------------------------------------------------------

# A prompt is read whole by the model on every call. promptlab's own meta-prompts and rubrics are 1-2 KB; 20 KB is
# some 5,000 tokens, more than the 4,096-token context its local models run with, so a prompt file that large is
# a dataset or a document given by mistake.
MAX_PROMPT_FILE_BYTES = 20 * 1024
# Extensions that hold rows, never a prompt (.json and .txt may be either: a prompt file can be JSON {system, user}).
DATASET_EXTENSIONS = (FORMATS - {".json", ".txt"}) | SPREADSHEETS
COLUMN_NAMES = set(INPUT_NAMES) | set(LABEL_NAMES) | set(REFERENCE_NAMES)
COLUMN_NAME = re.compile(r"[^\W\d]\w*(?:[ -]\w+){0,2}")  # a header cell: a name of up to three words


def read_prompt_file(path: str | Path, what: str = "prompt file") -> str:
    """The text of a prompt file (UTF-8, a BOM allowed), or a DataError that says why it is not one. `what` names
    where it was given ('--baseline-file'). A large file is refused without being read whole."""
    path = Path(path)
    name = f"{what} {path}"
    if not path.is_file():
        raise DataError(f"{name}: no such file")
    if path.suffix.lower() in DATASET_EXTENSIONS:
        raise _not_a_prompt(name, f"a {path.suffix.lower()} file holds rows")
    with path.open("rb") as f:
        head = f.read(MAX_PROMPT_FILE_BYTES + 1)  # enough to tell what it is
    return prompt_text(head, name, size=path.stat().st_size)


def prompt_text(raw: bytes, name: str, size: int | None = None) -> str:
    """A prompt file's bytes as text, or a DataError saying why they are no prompt: binary, not UTF-8, rows of a
    dataset, or over MAX_PROMPT_FILE_BYTES. `raw` may be the first bytes of a file of `size` bytes; `name` starts
    every message."""
    size = len(raw) if size is None else size
    if b"\x00" in raw and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 is text: it fails as not UTF-8
        raise DataError(f"{name}: a binary file (it has NUL bytes), not text. A prompt file is plain text, or JSON "
                        '{"system": …, "user": …}, saved as UTF-8.')
    try:  # a cut file may end inside a character: only a whole one decodes to its end
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(raw, final=size <= len(raw))
    except UnicodeDecodeError:
        raise DataError(f"{name}: not UTF-8 text. Save it as UTF-8.") from None
    rows = _rows_in(text)
    if rows:
        raise _not_a_prompt(name, rows)
    if size > MAX_PROMPT_FILE_BYTES:
        raise DataError(f"{name}: {size / 1024:.1f} KB is over the {MAX_PROMPT_FILE_BYTES // 1024} KB a prompt file may "
                        "hold (a model reads the whole prompt on every call). Cut it down to the instruction; a "
                        "dataset is imported with `promptlab datasets import`.")
    return text


def _not_a_prompt(name: str, why: str) -> DataError:
    return DataError(f"{name}: looks like a dataset, not a prompt ({why}). Import a dataset with `promptlab datasets "
                     'import FILE` and give it as --dataset; a prompt file is plain text, or JSON {"system": …, '
                     '"user": …}.')


def _rows_in(text: str) -> str | None:
    """Why `text` reads as rows of a dataset (None when it does not): a JSON object on every line, or a first line of
    column names, input or label among them (text, label, …), over lines with as many fields."""
    lines = [line for line in text[:8192].splitlines() if line.strip()][:20]
    if len(lines) >= 2 and all(line.lstrip().startswith("{") and _looks_like_json_doc(line) for line in lines):
        return "a JSON object on every line"
    for sep in ",;\t|":
        rows = list(csv.reader(lines, delimiter=sep))
        header = [cell.strip().lower() for cell in rows[0]] if rows else []
        named = sorted(COLUMN_NAMES.intersection(header))
        same = sum(len(row) == len(header) for row in rows[1:])
        names = all(COLUMN_NAME.fullmatch(cell) for cell in header)  # not a sentence that starts 'Label, …'
        if len(header) >= 2 and names and named and same >= 2 and same >= 0.8 * (len(rows) - 1):
            columns = ", ".join(f"'{c}'" for c in named)
            return f"its first line names columns {columns}, and {same} lines below it have as many fields"
    return None
