"""Load, validate and split labeled datasets: any file a user has, into inputs, labels and splits.

Every rejection is a `DataError` whose message says what is wrong and what to do about it.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict, Unpack

import numpy as np
import pandas as pd

from promptlab.errors import PromptlabError
from promptlab.scoring.objective import check_scoring
from promptlab.scoring.reading import normalize_label

INPUT_NAMES = ("input", "text", "sentence", "question", "content", "message", "review", "query", "prompt",
               "текст", "вопрос", "сообщение", "отзыв", "предложение", "ввод")
LABEL_NAMES = ("label", "target", "answer", "class", "category", "labels", "gold", "output", "sentiment", "intent",
               "метка", "класс", "ответ", "категория", "тональность", "таргет")
TEXT_FORMATS = {".csv", ".tsv", ".tab", ".txt", ".jsonl", ".ndjson", ".json"}
FORMATS = TEXT_FORMATS | {".parquet", ".pq"}
DEFAULT_FRACTIONS = (0.3, 0.35, 0.35)  # train (examples for meta-prompts), val (selection), test (held out)
SPLITS = ("train", "val", "test")
MAX_LABELS = 50
LONG_CELL_CHARS = 8000
# What a dataset's target column holds: a label per row (classification), a reference answer per row
# (scored by a reference scorer or an LLM judge), or nothing (outputs are judged, by a model or by hand).
DATASET_KINDS = ("labels", "reference", "unlabeled")
REFERENCE_NAMES = ("reference", "answer", "expected", "expected_output", "ideal", "target", "output", "gold", "label",
                   "ответ", "эталон")


class DataError(PromptlabError):
    """A dataset that cannot be used as given."""


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
    if ext in {".xlsx", ".xls", ".ods", ".numbers"}:
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


def _free_text(counts: Counter, n_rows: int) -> bool:
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
    return "reference" if _free_text(Counter(normalize_label(v) for v in values), len(values)) else "labels"


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


@dataclass(frozen=True)
class DatasetReport:
    n_rows: int
    label_counts: dict[str, int]
    duplicate_rows: int = 0
    conflicting_duplicates: int = 0
    blank_rows_dropped: int = 0
    merged_label_variants: dict[str, list[str]] = field(default_factory=dict)
    long_inputs: int = 0
    encoding: str = ""

    def notes(self) -> list[str]:
        out = []
        if self.duplicate_rows:
            out.append(f"{self.duplicate_rows} duplicate row(s) (same input and label); kept, but they weigh double in scores")
        if self.conflicting_duplicates:
            out.append(f"{self.conflicting_duplicates} input(s) appear with different labels; no prompt can get both right")
        if self.blank_rows_dropped:
            out.append(f"{self.blank_rows_dropped} completely blank row(s) skipped")
        for label, variants in self.merged_label_variants.items():
            out.append(f"label spellings {', '.join(repr(v) for v in variants)} were merged as '{label}'")
        if self.encoding and self.encoding not in ("utf-8", "utf-8-sig"):
            out.append(f"the file is not UTF-8: read as {self.encoding}; check that the preview shows the text right")
        if self.long_inputs:
            out.append(f"{self.long_inputs} input(s) longer than {LONG_CELL_CHARS} characters may not fit a small model's context")
        return out

    def to_dict(self) -> dict:
        return {**self.__dict__, "notes": self.notes()}


@dataclass(frozen=True)
class Dataset:
    """A validated dataset of any kind (`kind`: labels, reference answers, or no target). `frame` has columns idx,
    fields (dict of input columns), text, label (the label or reference answer; "" without one), label_norm, and
    given_split when the data brings its own split."""

    name: str
    frame: pd.DataFrame
    input_cols: tuple[str, ...]
    label_col: str
    labels: tuple[str, ...]  # display forms, in first-seen order
    content_hash: str
    report: DatasetReport
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    split_seed: int = 0
    id: str | None = None
    kind: str = "labels"  # one of DATASET_KINDS
    scoring: dict = field(default_factory=dict)  # the dataset's default scorer / judge (see promptlab.scoring.objective)

    @property
    def has_labels(self) -> bool:
        return self.kind == "labels"

    @property
    def n(self) -> int:
        return len(self.frame)

    @property
    def label_norms(self) -> tuple[str, ...]:
        return tuple(normalize_label(label) for label in self.labels)

    def split(self, name: str = "all", seed: int | None = None) -> pd.DataFrame:
        """Rows of one split ('train', 'val', 'test' or 'all'), in the seeded split's order."""
        if name == "all":
            return self.frame
        if name not in SPLITS:
            raise DataError(f"unknown split '{name}': use one of train, val, test, all")
        strata = self.frame["label_norm"].tolist() if self.has_labels else [""] * len(self.frame)
        seed = self.split_seed if seed is None else seed
        if "given_split" not in self.frame.columns:
            return self.frame[split_assignment(strata, self.fractions, seed) == name]
        # The file's own split: its rows keep it; rows it leaves blank are split between train and val by the
        # seeded fractions (a separate test file marks only the test rows).
        given = self.frame["given_split"].fillna("").to_numpy(dtype=object)
        free = given == ""
        if free.any():
            ft, fv = self.fractions[0], self.fractions[1]
            given = given.copy()
            given[free] = split_assignment([x for x, f in zip(strata, free) if f], (ft / (ft + fv), fv / (ft + fv)),
                                           seed, names=("train", "val"))
        return self.frame[given == name]

    @property
    def own_split(self) -> bool:
        """Whether the split comes with the data (a split column or a test file) rather than from promptlab."""
        return "given_split" in self.frame.columns


def _input_text(fields: dict, input_cols: tuple[str, ...]) -> str:
    if len(input_cols) == 1:
        return fields[input_cols[0]]
    return "\n".join(f"{c}: {fields[c]}" for c in input_cols)


# Typed once, forwarded as **options: callers keep their keywords and prepare keeps the one set of defaults.
class ImportOptions(TypedDict, total=False):
    """How a table is read as a dataset, as `prepare` takes it (its defaults apply to what is not given): the
    input column(s) and the label or reference column (detected when not given), the split's fractions (train,
    val, test) and seed, and the dataset's kind (one of DATASET_KINDS)."""

    input_cols: list[str] | None
    label_col: str | None
    fractions: tuple[float, float, float]
    split_seed: int
    kind: str


def prepare(
    frame: pd.DataFrame,
    name: str,
    input_cols: list[str] | None = None,
    label_col: str | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    split_seed: int = 0,
    filename: str | None = None,
    encoding: str = "",
    kind: str = "labels",
) -> Dataset:
    """Validate a raw frame into a Dataset of any kind, or raise DataError saying what to fix. A column named
    'split' (train / val / test; dev and validation read as val; blank: train or val, chosen by the seeded
    fractions) is the data's own split, kept as part of the dataset's identity. Labels are normalized and their
    spellings merged; a reference answer is kept verbatim (trimmed), and without labels the split is a plain
    seeded one (there are no labels to stratify)."""
    filename = filename or name
    encoding = encoding or frame.attrs.get("encoding", "")
    frame, given = _given_split(frame, filename, input_cols, label_col)
    input_cols, label_col = detect_columns(frame, input_cols, label_col, filename, kind)
    _check_fractions(fractions)
    sub, stripped, rownums, blank_dropped = _rows(frame, list(input_cols) + ([label_col] if label_col else []), filename)
    if label_col:
        _check_targets(stripped[label_col], kind, label_col, rownums, filename)
    _check_inputs(stripped, input_cols, rownums, filename)
    if kind == "labels":
        shown, norms, label_counts, merged = _label_targets(stripped[label_col].tolist(), label_col, filename)
    else:
        shown, norms, label_counts, merged = _reference_targets(stripped, label_col, filename)
    out = _examples_frame(sub, input_cols, shown, norms, given)
    same = "label_norm" if kind == "labels" else "label"  # what, with the input, makes two rows the same example
    content_hash = _content_hash(input_cols, label_col, out["fields"].tolist(), out[same].tolist(), tuple(fractions),
                                 split_seed, kind, given=out.get("given_split"))
    return _check_given(Dataset(
        name=name, frame=out, input_cols=tuple(input_cols), label_col=label_col,
        labels=tuple(dict.fromkeys(shown)) if kind == "labels" else (), content_hash=content_hash,
        report=_data_report(out, same, label_counts, merged, blank_dropped, encoding),
        fractions=tuple(fractions), split_seed=split_seed, kind=kind,
    ), filename)


def _check_targets(targets: pd.Series, kind: str, label_col: str, rownums: list[int], filename: str) -> None:
    """Refuse rows whose label (or, without labels, reference answer) in `label_col` is blank."""
    if kind == "labels":
        what, fix = f"have no label in '{label_col}'", "Fill in or remove those rows."
    else:
        what, fix = (f"have no reference answer in '{label_col}'", "Fill them in, remove those rows, or import the "
                     "file as unlabeled (no reference) to score it with a judge or by hand.")
    _refuse_rows((targets == "").to_numpy(), rownums, filename, what, fix)


def _label_targets(originals: list[str], label_col: str, filename: str
                   ) -> tuple[list[str], list[str], dict[str, int], dict[str, list[str]]]:
    """(each row's label as shown, its normalized label, the rows per shown label, the merged spellings) of a
    labeled dataset; raises DataError unless the labels make one that can be split (_check_label_counts)."""
    norms, display, merged = _label_spellings(originals)
    counts = Counter(norms)
    _check_label_counts(counts, display, norms, label_col, filename)
    return [display[n] for n in norms], norms, {display[n]: counts[n] for n in dict.fromkeys(norms)}, merged


def _reference_targets(stripped: pd.DataFrame, label_col: str | None, filename: str
                       ) -> tuple[list[str], list[str], dict[str, int], dict[str, list[str]]]:
    """_label_targets for a dataset without labels: each row's reference answer (white space folded unless it
    spans lines; '' without a reference column), no normalized labels, no counts, no merges. Raises DataError
    when there are too few rows to split."""
    n = len(stripped)
    if n < len(SPLITS):
        raise DataError(f"{filename}: {n} row(s) cannot be split into train, val and test. Add examples.")
    refs = [" ".join(v.split()) if "\n" not in v else v for v in stripped[label_col].tolist()] if label_col else [""] * n
    return refs, [""] * n, {}, {}


def _label_spellings(originals: list[str]) -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    """(each row's normalized label; per normalized label, the spelling to show: its most common one, white space
    folded; per shown label written more than one way, its spellings sorted)."""
    norms = [normalize_label(v) for v in originals]
    spellings: dict[str, Counter] = {}
    for norm, orig in zip(norms, originals):
        spellings.setdefault(norm, Counter())[" ".join(orig.split())] += 1
    display = {norm: c.most_common(1)[0][0] for norm, c in spellings.items()}
    merged = {display[n]: sorted(c) for n, c in spellings.items() if len(c) > 1}
    return norms, display, merged


def _check_label_counts(counts: Counter, display: dict[str, str], norms: list[str], label_col: str,
                        filename: str) -> None:
    """Raise DataError unless the labels make a classification dataset that can be split: two labels at least, not
    so many that the column reads as free text, and each label with a row for every split."""
    if len(counts) < 2:
        only = display[norms[0]]
        raise DataError(
            f"{filename}: every row has the same label '{only}' in '{label_col}'. A classification dataset needs at "
            "least two labels: add examples of the other labels, or check that the right label column is chosen."
        )
    if _free_text(counts, len(norms)):
        raise DataError(
            f"{filename}: column '{label_col}' has {len(counts)} distinct values in {len(norms)} rows, so it looks like "
            "free text, not a label. If each row carries a reference answer, import it with --kind reference (in the "
            "dashboard: 'a reference answer'); if another column holds the label, choose it with --label-col."
        )
    rare = sorted((c, display[n]) for n, c in counts.items() if c < len(SPLITS))
    if rare:
        listing = ", ".join(f"'{lab}' ({c})" for c, lab in rare[:5])
        raise DataError(
            f"{filename}: too few examples to split: label(s) {listing} have fewer than {len(SPLITS)} rows, and each label "
            "needs at least one row in train, val and test. Add examples, or merge or remove those labels."
        )


def _examples_frame(sub: pd.DataFrame, input_cols, labels: list[str], norms: list[str], given) -> pd.DataFrame:
    """A Dataset's frame from the kept rows `sub`: idx, fields, text, label (the label as shown, or the reference
    answer), label_norm ('' without labels), and given_split when the data brings its own split (`given`, indexed
    like the raw frame)."""
    fields_list = [dict(zip(input_cols, row)) for row in sub[input_cols].itertuples(index=False, name=None)]
    texts = [_input_text(f, tuple(input_cols)) for f in fields_list]
    out = pd.DataFrame({
        "idx": np.arange(len(texts), dtype=np.int64),
        "fields": fields_list,
        "text": texts,
        "label": labels,
        "label_norm": norms,
    })
    if given is not None:
        out["given_split"] = given.loc[sub.index].to_numpy(dtype=object)
    return out


def _data_report(out: pd.DataFrame, same: str, label_counts: dict[str, int], merged: dict[str, list[str]],
                 blank_dropped: int, encoding: str) -> DatasetReport:
    """What a dataset's frame holds that the analyst should know: duplicates (the same input and the same `same`
    column: label_norm, or the reference answer), inputs seen with different ones (none without a target), long
    inputs, merged label spellings, skipped blank rows, the file's encoding."""
    texts, norms = out["text"].tolist(), out[same].tolist()
    key_frame = pd.Series([t + "\x1f" + n for t, n in zip(texts, norms)])
    return DatasetReport(
        n_rows=len(out),
        label_counts=label_counts,
        duplicate_rows=int(key_frame.duplicated().sum()),
        conflicting_duplicates=int(pd.DataFrame({"t": texts, "n": norms}).drop_duplicates().duplicated("t").sum()),
        blank_rows_dropped=blank_dropped,
        merged_label_variants=merged,
        long_inputs=int((pd.Series(texts).str.len() > LONG_CELL_CHARS).sum()),
        encoding=encoding,
    )


SPLIT_VALUES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "development": "val", "test": "test", "testing": "test", "": ""}


def is_split_column(column) -> bool:
    """A column named 'split' (any case) holds the data's own split, not an input or a label."""
    return str(column).strip().lower() == "split"


def _split_values(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(the cells as written, trimmed; each read as train / val / test / '' (blank), NaN when unknown)."""
    raw = column.fillna("").astype(str).str.strip()
    return raw, raw.str.lower().map(SPLIT_VALUES)


def _given_split(frame: pd.DataFrame, filename: str, input_cols=None, label_col=None):
    """(the frame without its split column, the split per row or None). A column named 'split' that the user has
    not chosen as an input or label is the data's own split."""
    col = next((c for c in frame.columns if is_split_column(c) and c not in (input_cols or []) and c != label_col),
               None)
    if col is None:
        return frame, None
    raw, norm = _split_values(frame[col])
    bad = norm.isna().to_numpy()
    if bad.any():
        values = ", ".join(f"'{v}'" for v in sorted(set(raw[bad]))[:5])
        _refuse_rows(bad, (frame.index + 2).tolist(), filename, f"have a split promptlab does not know ({values}) in "
                     f"'{col}'", "Use train, val (dev and validation are read as val) or test; leave it blank to let "
                     "promptlab choose train or val.")
    return frame.drop(columns=[col]), norm


def _check_given(ds: Dataset, filename: str) -> Dataset:
    """A dataset with its own split must have rows in every split."""
    if ds.own_split:
        for name in SPLITS:
            part = ds.split(name)
            if part.empty:
                raise DataError(f"{filename}: the split leaves no '{name}' rows. Mark some rows '{name}'"
                                + (" (or dev)" if name == "val" else "") + " in the split column, or leave rows blank "
                                "for promptlab to split between train and val.")
            if ds.has_labels and name != "train":  # a label absent from val or test cannot be measured there
                absent = [lab for lab, norm in zip(ds.labels, ds.label_norms) if norm not in set(part["label_norm"])]
                if absent:
                    raise DataError(f"{filename}: label(s) {', '.join(repr(a) for a in absent[:5])} have no '{name}' "
                                    f"rows in your split, so their scores there would be undefined. Mark at least one "
                                    f"row of each label '{name}'.")
    return ds


def _rows(frame: pd.DataFrame, cols: list[str], filename: str):
    """The used columns as text, without completely blank rows: (rows, trimmed rows, file line numbers, blanks
    dropped). Refuses a file whose rows are all blank."""
    sub = frame[cols].astype(str)
    stripped = sub.apply(lambda s: s.str.strip())
    blank = (stripped == "").all(axis=1)
    sub, stripped = sub[~blank], stripped[~blank]
    if sub.empty:
        raise DataError(f"{filename}: every row is blank. Add examples (one per row) below the header.")
    return sub, stripped, (sub.index + 2).tolist(), int(blank.sum())  # 1-based lines in a file with a header


def _refuse_rows(bad, rownums: list[int], filename: str, what: str, fix: str) -> None:
    """Refuse the file when any row is flagged in `bad`, naming how many and the first five file lines."""
    if bad.any():
        rows = [rownums[i] for i in np.flatnonzero(bad)[:5]]
        raise DataError(f"{filename}: {int(bad.sum())} row(s) {what} (rows {', '.join(map(str, rows))}"
                        f"{' …' if bad.sum() > 5 else ''}). {fix}")


def _check_inputs(stripped: pd.DataFrame, input_cols, rownums: list[int], filename: str) -> None:
    _refuse_rows((stripped[list(input_cols)] == "").all(axis=1).to_numpy(), rownums, filename, "have an empty input",
                 "Fill in or remove those rows.")


def _content_hash(input_cols, label_col, fields_list, norms, fractions=DEFAULT_FRACTIONS, split_seed: int = 0,
                  kind: str = "labels", given=None) -> str:
    """The dataset's identity: its columns, rows and labels, and its split (the same rows split another
    way are another dataset: their val and test scores are not comparable). The default split adds
    nothing, so datasets imported before the split was part of the identity keep their ids."""
    h = hashlib.sha256()
    h.update(json.dumps([list(input_cols), label_col], ensure_ascii=False).encode())
    if kind != "labels":  # labeled datasets keep the ids they always had
        h.update(json.dumps({"kind": kind}).encode())
    fractions = tuple(round(f, 6) for f in fractions)
    if split_seed != 0 or fractions != DEFAULT_FRACTIONS:
        h.update(json.dumps({"split_seed": split_seed, "fractions": list(fractions)}).encode())
    if given is not None:  # the data's own split is part of what the dataset is
        h.update(json.dumps({"given_split": list(given)}).encode())
    for f, n in zip(fields_list, norms):
        h.update(json.dumps([f, n], ensure_ascii=False, sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def with_test_file(frame: pd.DataFrame, test: pd.DataFrame, filename: str, test_filename: str) -> pd.DataFrame:
    """The main file's rows (train and val: its own split column, or promptlab's) and a separate test file's rows
    (test), as one frame with a 'split' column for `prepare`."""
    split_col = next((c for c in frame.columns if is_split_column(c)), None)
    missing = [c for c in frame.columns if c != split_col and c not in test.columns]
    if missing:
        raise DataError(f"{test_filename}: the test file lacks column(s) {', '.join(map(str, missing))} that "
                        f"{filename} has. Give both files the same columns.")
    main = frame.rename(columns={split_col: "split"}) if split_col else frame.assign(split="")
    if (_split_values(main["split"])[1] == "test").any():
        raise DataError(f"{filename} marks test rows in its split column and a test file is given too: use one of them")
    out = pd.concat([main, test[[c for c in frame.columns if c != split_col]].assign(split="test")], ignore_index=True)
    out.attrs = dict(frame.attrs)
    return out


def load_dataset(
    path_or_bytes: str | Path | bytes,
    filename: str | None = None,
    name: str | None = None,
    *,
    test_file: str | Path | tuple[bytes, str] | None = None,
    **options: Unpack[ImportOptions],
) -> Dataset:
    """read_table + prepare: a file (path or uploaded bytes), and optionally a separate test file, into a validated
    dataset. `options`: how to read it (ImportOptions)."""
    if isinstance(path_or_bytes, (str, Path)):
        filename = filename or Path(path_or_bytes).name
    frame = read_table(path_or_bytes, filename)
    if test_file is not None:  # a path, or (bytes, filename) from an upload
        data, test_name = test_file if isinstance(test_file, tuple) else (test_file, Path(test_file).name)
        frame = with_test_file(frame, read_table(data, test_name), filename or "dataset", test_name)
    name = name or Path(filename or "dataset").stem
    return prepare(frame, name, filename=filename, **options)


# --- splitting ---------------------------------------------------------------------------------------

def _check_fractions(fractions) -> None:
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"split fractions {tuple(fractions)} must be three positive numbers (train, val, test) that sum to 1")


def split_assignment(label_norms: list[str], fractions=DEFAULT_FRACTIONS, seed: int = 0,
                     names: tuple[str, ...] = SPLITS) -> np.ndarray:
    """Stratified train/val/test assignment, deterministic for a seed.

    Per label, rows are shuffled and cut by the fractions (largest remainder), with at least one row of
    every label in every split. (scikit-learn's StratifiedShuffleSplit can leave a rare label out of a
    split entirely, which would make its recall on test undefined; this guarantees it is present.)
    """
    if names == SPLITS:
        _check_fractions(fractions)
    labels = np.asarray(label_norms, dtype=object)
    out = np.empty(len(labels), dtype=object)
    rng = np.random.default_rng(seed)
    for label in sorted(set(label_norms)):
        rows = np.flatnonzero(labels == label)
        rng.shuffle(rows)
        if names != SPLITS and len(rows) < len(names):  # too few to share out (rows a file's own split left blank)
            out[rows] = names[0]
            continue
        counts = _allocate(len(rows), fractions)
        start = 0
        for split, count in zip(names, counts):
            out[rows[start:start + count]] = split
            start += count
    return out


def _allocate(n: int, fractions) -> list[int]:
    if n < len(fractions):
        raise DataError(f"cannot split {n} rows of one label into {len(fractions)} parts")
    exact = [n * f for f in fractions]
    counts = [max(1, int(x)) for x in exact]
    while sum(counts) > n:
        i = max(range(len(counts)), key=lambda j: counts[j] - exact[j])
        counts[i] -= 1
    order = sorted(range(len(counts)), key=lambda j: exact[j] - counts[j], reverse=True)
    k = 0
    while sum(counts) < n:
        counts[order[k % len(order)]] += 1
        k += 1
    return counts


def stratified_sample(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Up to n rows with the label proportions kept (each label at least once when n allows)."""
    if n >= len(frame):
        return frame
    rng = np.random.default_rng(seed)
    groups = {lab: rng.permutation(np.flatnonzero(frame["label_norm"].to_numpy() == lab))
              for lab in sorted(frame["label_norm"].unique())}
    total = len(frame)
    quota = {lab: len(rows) * n / total for lab, rows in groups.items()}
    take = {lab: min(len(groups[lab]), max(1 if n >= len(groups) else 0, int(q))) for lab, q in quota.items()}
    for lab in sorted(quota, key=lambda lab: quota[lab] - int(quota[lab]), reverse=True):
        if sum(take.values()) >= n:
            break
        if take[lab] < len(groups[lab]):
            take[lab] += 1
    while sum(take.values()) > n:
        lab = max(take, key=lambda lab: take[lab])
        take[lab] -= 1
    picked = np.sort(np.concatenate([groups[lab][:k] for lab, k in take.items()]))
    return frame.iloc[picked]


def stratified_order(frame: pd.DataFrame, seed: int = 0, by_label: bool = True) -> pd.DataFrame:
    """The rows in a seeded order whose every prefix keeps the label mix: each label's rows are spread
    evenly along the order (row j of a label with m rows sits near (j + u) / m), so the first 20 of a
    race hold about the same shares as all of it, rare labels included. Without labels: a shuffle."""
    rng = np.random.default_rng([seed, 7])
    if not by_label or frame.empty:
        return frame.iloc[rng.permutation(len(frame))]
    labels = frame["label_norm"].to_numpy()
    keys = np.empty(len(frame))
    for lab in sorted(set(labels)):
        rows = np.flatnonzero(labels == lab)
        rows = rows[rng.permutation(len(rows))]
        keys[rows] = (np.arange(len(rows)) + rng.uniform(0.05, 0.95, len(rows))) / len(rows)
    return frame.iloc[np.argsort(keys, kind="stable")]


def holdout_split(frame: pd.DataFrame, share: float, seed: int = 0, by_label: bool = True
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, held back): `share` of the rows held back, stratified by label when there are labels."""
    n = int(round(len(frame) * share))
    if n <= 0 or len(frame) < 2:
        return frame, frame.iloc[:0]
    if by_label:
        held = stratified_sample(frame, n, seed=seed + 1_000_003)
        # a label whose every row would be held back keeps one for the search (it could not be learned or
        # measured there otherwise: recall of a label with no search rows has no value)
        counts = frame["label_norm"].value_counts()
        whole = held["label_norm"].value_counts()
        gone = [lab for lab, k in whole.items() if k == counts[lab]]
        if gone:
            held = held.drop([held.index[held["label_norm"].to_numpy() == lab][-1] for lab in gone])
    else:
        held = frame.iloc[np.sort(np.random.default_rng([seed, 11]).permutation(len(frame))[:n])]
    return frame.drop(held.index), held


def proportional_subset(frame: pd.DataFrame, like: pd.DataFrame, cap: int | None = None, seed: int = 0,
                        by_label: bool = True) -> pd.DataFrame:
    """The largest subset of `frame` (at most `cap` rows) whose label shares are those of `like`, drawn in a seeded
    order: rows added to a sample keep its label mix (a label missing from `frame` leaves no room for any). Without
    labels: up to `cap` rows in a seeded order."""
    order = frame.iloc[np.random.default_rng([seed, 13]).permutation(len(frame))]
    if not by_label or frame.empty or like.empty:
        return order if cap is None else order.iloc[:cap]
    shares = like["label_norm"].value_counts(normalize=True)
    have = frame["label_norm"].value_counts()
    n = min(int(have.get(lab, 0) / share + 1e-9) for lab, share in shares.items())
    n = n if cap is None else min(n, cap)
    take = {lab: int(math.floor(n * share + 1e-9)) for lab, share in shares.items()}
    if not sum(take.values()):
        return frame.iloc[:0]
    picked = [order[order["label_norm"] == lab].iloc[:k] for lab, k in take.items() if k]
    return pd.concat(picked).sort_index()


# --- persistence (SQL lives in store.py) -----------------------------------------------------------

def import_dataset(
    store,
    source: str | Path | bytes,
    filename: str | None = None,
    name: str | None = None,
    *,
    scoring: dict | None = None,
    test_file: str | Path | tuple[bytes, str] | None = None,
    **options: Unpack[ImportOptions],
) -> tuple[Dataset, bool]:
    """Validate and store a dataset. Returns (dataset, reused): the same content imported again is reused.
    `scoring`: the default scorer / judge for a dataset without labels (see promptlab.scoring.objective). `test_file`:
    a separate file of test rows (the main file's rows are then train and val). `options`: how to read it
    (ImportOptions)."""
    ds = load_dataset(source, filename, name, test_file=test_file, **options)
    if scoring:
        ds = replace(ds, scoring=check_scoring(scoring, ds, store))
    existing = store.dataset_id_by_hash(ds.content_hash)
    if existing:
        if scoring:  # the same data imported again with a new scoring: the new one applies
            store.set_dataset_scoring(existing, ds.scoring)
        return stored_dataset(store, existing), True
    final_name = ds.name.strip() or "dataset"
    if store.dataset_name_taken(final_name):
        if name:
            raise DataError(
                f"a different dataset is already stored as '{final_name}'. Choose another --name, "
                "or delete the old one first (datasets delete)."
            )
        n = 2
        while store.dataset_name_taken(f"{final_name}-{n}"):
            n += 1
        final_name = f"{final_name}-{n}"
    dataset_id = ds.content_hash[:12]
    ds = replace(ds, name=final_name, id=dataset_id)
    source_name = filename or (Path(source).name if not isinstance(source, bytes) else "upload")
    store.insert_dataset(ds, dataset_id, source=source_name)
    return ds, False


def stored_dataset(store, name_or_id: str) -> Dataset:
    rec = store.dataset_row(name_or_id)
    if rec is None:
        known = store.list_datasets()["name"].tolist()
        hint = f"Stored datasets: {', '.join(known)}." if known else "No dataset is stored yet."
        raise DataError(f"no dataset named '{name_or_id}'. {hint} Or give the path of a file to import.")
    frame = store.dataset_examples(rec["id"])
    report = DatasetReport(**{k: v for k, v in (rec["report"] or {}).items() if k in DatasetReport.__dataclass_fields__}) \
        if rec["report"] else DatasetReport(n_rows=len(frame), label_counts={})
    return Dataset(
        name=rec["name"], frame=frame, input_cols=tuple(rec["input_cols"]), label_col=rec["label_col"],
        labels=tuple(rec["labels"]), content_hash=rec["content_hash"], report=report,
        fractions=tuple(rec["fractions"]), split_seed=rec["split_seed"], id=rec["id"],
        kind=rec.get("kind") or "labels", scoring=rec.get("scoring") or {},
    )


def resolve_dataset(store, ref: str, **import_options) -> Dataset:
    """A stored dataset by name or id, or a file path (imported, or reused if already stored)."""
    path = Path(ref).expanduser()
    if path.suffix and (path.exists() or store.dataset_row(ref) is None):
        return import_dataset(store, path, **import_options)[0]
    return stored_dataset(store, ref)
