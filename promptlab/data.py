"""The Dataset: a table read by promptlab.read, validated into inputs, labels (or reference answers) and a split;
its identity, its report, and its place in the store.

Every rejection is a `DataError` whose message says what is wrong and what to do about it.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict, Unpack

import numpy as np
import pandas as pd

from promptlab.errors import DataError
from promptlab.read import detect_columns, is_free_text, is_split_column, read_table
from promptlab.scoring.objective import check_scoring
from promptlab.scoring.reading import normalize_label
from promptlab.split import DEFAULT_FRACTIONS, SPLITS, check_fractions, split_assignment

LONG_CELL_CHARS = 8000


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
    check_fractions(fractions)
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
    if is_free_text(counts, len(norms)):
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
