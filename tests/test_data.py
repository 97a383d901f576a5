"""Datasets: every format, column detection, label normalization, splits, and clear rejections."""
import json

import numpy as np
import pandas as pd
import pytest

from promptlab import data as D
from promptlab import read as R
from promptlab import split as S
from promptlab.errors import DataError


def write(tmp_path, name, content, encoding="utf-8"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode(encoding))
    return path


ROWS = [("good", "pos"), ("bad", "neg"), ("fine", "pos"), ("awful", "neg"), ("nice", "pos"), ("poor", "neg")]


def test_reads_every_format_to_the_same_table(tmp_path):
    csv_path = write(tmp_path, "a.csv", "text,label\n" + "\n".join(f"{t},{l}" for t, l in ROWS))
    tsv_path = write(tmp_path, "a.tsv", "text\tlabel\n" + "\n".join(f"{t}\t{l}" for t, l in ROWS))
    jsonl_path = write(tmp_path, "a.jsonl", "\n".join(json.dumps({"text": t, "label": l}) for t, l in ROWS))
    json_path = write(tmp_path, "a.json", json.dumps([{"text": t, "label": l} for t, l in ROWS]))
    bb = {"examples": [{"input": t, "target_scores": {"pos": int(l == "pos"), "neg": int(l == "neg")}} for t, l in ROWS]}
    bb_path = write(tmp_path, "task.json", json.dumps(bb))
    pq_path = tmp_path / "a.parquet"
    pd.DataFrame(ROWS, columns=["text", "label"]).to_parquet(pq_path)
    for path in (csv_path, tsv_path, jsonl_path, json_path, bb_path, pq_path):
        ds = D.load_dataset(path)
        assert ds.frame["text"].tolist() == [t for t, _ in ROWS], path
        assert ds.frame["label"].tolist() == [l for _, l in ROWS], path


def test_semicolon_csv_and_quoted_newlines(tmp_path):
    path = write(tmp_path, "semi.csv", 'text;label\n"line one\nline two";pos\nbad;neg\nok;pos\nmeh;neg\nyes;pos\nno;neg\n')
    ds = D.load_dataset(path)
    assert ds.frame["text"][0] == "line one\nline two"


@pytest.mark.parametrize("columns,expected", [
    (["sentence", "answer"], (["sentence"], "answer")),
    (["question", "class", "id"], (["question"], "class")),
    (["Input", "Target"], (["Input"], "Target")),
    (["review_body", "label"], (["review_body"], "label")),
])
def test_detects_obvious_columns(columns, expected):
    frame = pd.DataFrame([["x"] * len(columns)], columns=columns)
    assert R.detect_columns(frame) == expected


def test_unknown_column_lists_the_real_ones(tmp_path):
    path = write(tmp_path, "a.csv", "text,label\n" + "\n".join(f"{t},{l}" for t, l in ROWS))
    with pytest.raises(DataError, match="no column 'lable'.*text, label"):
        D.load_dataset(path, label_col="lable")


def test_ambiguous_columns_ask_for_a_choice():
    frame = pd.DataFrame([["a", "b", "c"]], columns=["x", "y", "z"])
    with pytest.raises(DataError, match="--label-col"):
        R.detect_columns(frame)


def test_multiple_input_columns_render_together(tmp_path):
    path = write(tmp_path, "a.csv", "premise,hypothesis,label\n" + "\n".join(f"p{i},h{i},{'yes' if i % 2 else 'no'}" for i in range(8)))
    ds = D.load_dataset(path, input_cols=["premise", "hypothesis"])
    assert ds.frame["text"][0] == "premise: p0\nhypothesis: h0"
    assert ds.frame["fields"][0] == {"premise": "p0", "hypothesis": "h0"}


def test_labels_are_normalized_for_matching_and_kept_for_display(tmp_path):
    path = write(tmp_path, "a.csv", "text,label\na,Positive\nb, positive \nc,POSITIVE\nd,Negative\ne,negative\nf,Negative\ng,positive\n")
    ds = D.load_dataset(path)
    assert set(ds.frame["label_norm"]) == {"positive", "negative"}
    assert set(ds.labels) == {"Negative", "positive"} or set(ds.labels) == {"Negative", "Positive"}
    assert ds.report.merged_label_variants
    assert any("merged" in n for n in ds.report.notes())


def test_cyrillic_cp1251_file_is_read(tmp_path):
    text = "текст,метка\n" + "\n".join(f"отзыв номер {i},{'хорошо' if i % 2 else 'плохо'}" for i in range(10))
    path = write(tmp_path, "ru.csv", text, encoding="cp1251")
    frame = R.read_table(path)
    assert frame.columns.tolist() == ["текст", "метка"]
    ds = D.prepare(frame, "ru", input_cols=["текст"], label_col="метка")
    assert set(ds.labels) == {"хорошо", "плохо"}


def test_utf8_bom_is_stripped(tmp_path):
    path = write(tmp_path, "bom.csv", b"\xef\xbb\xbf" + "text,label\n".encode() + "\n".join(f"{t},{l}" for t, l in ROWS).encode())
    assert R.read_table(path).columns.tolist() == ["text", "label"]


@pytest.mark.parametrize("name,content,message", [
    ("empty.csv", b"", "empty"),
    ("blank.csv", b"  \n\n", "empty"),
    ("header.csv", b"text,label\n", "no rows|header but no rows"),
    ("binary.csv", bytes(range(256)) * 10, "binary"),
    ("mixed.csv", "text,label\nпривет,a\n".encode() + "мир,b\n".encode("cp1251") + "ещё раз,a\nснова,b\nи опять,a\nи так,b\n".encode(), "mixes text encodings"),
    ("wrong.json", b'{"a": 1}', "wrong shape"),
    ("broken.jsonl", b'{"text": "a", "label": "x"}\n{oops\n', "line 2 is not valid JSON"),
    ("sheet.xlsx", b"PK\x03\x04", "Export the sheet as CSV"),
    ("ragged.csv", b"text,label\na,b\nc,d,e,f\n", "malformed CSV"),
])
def test_bad_files_are_rejected_with_a_clear_message(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError, match=message):
        D.load_dataset(path)


@pytest.mark.parametrize("rows,message", [
    ([("a", "x"), ("b", "x"), ("c", "x")], "same label"),
    ([("a", "x"), ("b", ""), ("c", "y")], "no label"),
    ([("a", "x"), ("b", "x"), ("c", "x"), ("d", "y"), ("e", "y")], "too few examples to split"),
    ([("", "x"), ("b", "y"), ("c", "y")], "empty input"),
])
def test_content_problems_are_rejected(rows, message):
    frame = pd.DataFrame(rows, columns=["text", "label"])
    with pytest.raises(DataError, match=message):
        D.prepare(frame, "t")


def test_free_text_label_column_is_rejected():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(120)], "label": [f"l{i}" for i in range(120)]})
    with pytest.raises(DataError, match="looks like free text.*import it with --kind reference"):
        D.prepare(frame, "t")
    assert R.guess_kind(frame) == "reference"
    assert R.guess_kind(pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"]})) == "labels"


def test_duplicates_are_reported():
    frame = pd.DataFrame({"text": ["a", "a", "b", "c", "d", "e", "a"], "label": ["x", "x", "y", "x", "y", "y", "y"]})
    ds = D.prepare(frame, "t")
    assert ds.report.duplicate_rows == 1
    assert ds.report.conflicting_duplicates == 1
    assert any("duplicate" in n for n in ds.report.notes())


def test_file_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_MAX_FILE_MB", "0.001")
    path = write(tmp_path, "big.csv", "text,label\n" + "x,y\n" * 1000)
    with pytest.raises(DataError, match="over the"):
        D.load_dataset(path)


def test_split_is_stratified_deterministic_and_covers_rare_labels():
    labels = ["a"] * 300 + ["b"] * 90 + ["c"] * 3
    first = S.split_assignment(labels, (0.3, 0.35, 0.35), seed=7)
    again = S.split_assignment(labels, (0.3, 0.35, 0.35), seed=7)
    other = S.split_assignment(labels, (0.3, 0.35, 0.35), seed=8)
    assert (first == again).all() and not (first == other).all()
    frame = pd.DataFrame({"label": labels, "split": first})
    counts = frame.groupby(["label", "split"]).size().unstack()
    assert (counts.loc["c"] == 1).all()  # the rare label is in every split
    assert abs(counts.loc["a", "train"] - 90) <= 1 and abs(counts.loc["b", "test"] - 31.5) <= 1


def test_stratified_sample_keeps_every_label():
    frame = pd.DataFrame({"label_norm": ["a"] * 90 + ["b"] * 10, "idx": range(100)})
    sample = S.stratified_sample(frame, 20, seed=1)
    assert len(sample) == 20
    assert sample["label_norm"].value_counts().to_dict() == {"a": 18, "b": 2}


def test_import_twice_reuses_by_content_hash(store, tiny_csv, tmp_path):
    first, reused1 = D.import_dataset(store, tiny_csv)
    copy = tmp_path / "copy_of_tiny.csv"
    copy.write_bytes(tiny_csv.read_bytes())
    second, reused2 = D.import_dataset(store, copy)
    assert (reused1, reused2) == (False, True)
    assert first.id == second.id and len(store.list_datasets()) == 1
    back = D.stored_dataset(store, first.name)
    assert back.frame["text"].tolist() == first.frame["text"].tolist()
    assert back.split("test")["idx"].tolist() == first.split("test")["idx"].tolist()


def test_the_same_rows_split_another_way_are_another_dataset(store, tiny_csv):
    default, _ = D.import_dataset(store, tiny_csv)
    seeded, reused = D.import_dataset(store, tiny_csv, split_seed=5)
    assert not reused and seeded.id != default.id and seeded.name == "tiny-2"
    again, reused = D.import_dataset(store, tiny_csv, split_seed=5)
    assert reused and again.id == seeded.id
    other_fractions, reused = D.import_dataset(store, tiny_csv, fractions=(0.5, 0.25, 0.25))
    assert not reused and len({default.id, seeded.id, other_fractions.id}) == 3
    # each keeps its own split
    assert D.stored_dataset(store, seeded.id).split("test")["idx"].tolist() == seeded.split("test")["idx"].tolist()
    assert seeded.split("test")["idx"].tolist() != default.split("test")["idx"].tolist()
    # ids of datasets with the default split did not change when the split joined the identity
    assert default.content_hash == D._content_hash(default.input_cols, default.label_col,
                                                   default.frame["fields"].tolist(), default.frame["label_norm"].tolist())


def test_rejected_import_leaves_the_store_unchanged(store, tmp_path):
    path = write(tmp_path, "one_label.csv", "text,label\na,x\nb,x\nc,x\n")
    with pytest.raises(DataError):
        D.import_dataset(store, path)
    assert store.list_datasets().empty


def test_demo_dataset_meets_its_promises():
    from conftest import DEMO

    ds = D.load_dataset(DEMO)
    counts = ds.report.label_counts
    assert ds.n >= 200
    assert min(counts.values()) / ds.n < 0.08  # a rare label
    assert ds.frame["text"].str.contains("[а-яА-Я]").sum() >= 10  # Russian rows
    assert np.all([len(ds.split(s)) > 0 for s in S.SPLITS])


def _split_rows(n: int = 30) -> pd.DataFrame:
    rows = []
    for i in range(n):
        rows.append((f"great {i}", "pos", ["train", "dev", "test"][i % 3]))
        rows.append((f"awful {i}", "neg", ["Train", "validation", "TEST"][i % 3]))
    return pd.DataFrame(rows, columns=["text", "label", "split"])


def test_a_split_column_is_honoured_stored_and_part_of_the_identity(store, tmp_path):
    frame = _split_rows()
    frame.to_csv(tmp_path / "own.csv", index=False)
    ds, _ = D.import_dataset(store, tmp_path / "own.csv")
    assert ds.own_split and ds.input_cols == ("text",)  # the split column is neither input nor label
    test = ds.split("test")
    assert set(test["text"]) == set(frame[frame["split"].str.lower() == "test"]["text"])
    assert len(ds.split("val")) == 20 and len(ds.split("train")) == 20
    assert ds.split("test", seed=7)["idx"].tolist() == test["idx"].tolist()  # a run's seed does not move it
    again = D.stored_dataset(store, ds.id)
    assert again.own_split and again.split("val")["idx"].tolist() == ds.split("val")["idx"].tolist()
    plain = D.prepare(frame.drop(columns=["split"]), "own")
    assert plain.content_hash != ds.content_hash and not plain.own_split


def test_a_separate_test_file_is_the_test_split(store, tmp_path):
    frame = _split_rows()
    is_test = frame["split"].str.lower() == "test"
    frame[~is_test].drop(columns=["split"]).to_csv(tmp_path / "main.csv", index=False)
    frame[is_test].drop(columns=["split"]).to_csv(tmp_path / "test.csv", index=False)
    ds, _ = D.import_dataset(store, tmp_path / "main.csv", test_file=tmp_path / "test.csv")
    assert set(ds.split("test")["text"]) == set(frame[is_test]["text"])
    assert len(ds.split("train")) + len(ds.split("val")) == 40 and len(ds.split("val")) > 0
    frame[is_test][["text"]].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match="short.csv: the test file lacks column"):
        D.import_dataset(store, tmp_path / "main.csv", test_file=tmp_path / "short.csv")


def test_rows_left_blank_are_shared_between_train_and_val_even_one_of_a_label():
    frame = _split_rows()
    frame.loc[0, "split"] = ""  # the only blank 'pos' row
    ds = D.prepare(frame, "blank")
    assert ds.frame.loc[0, "idx"] in set(ds.split("train")["idx"])


@pytest.mark.parametrize("change,message", [
    ({3: "holdout"}, "split promptlab does not know \\('holdout'\\).*Use train, val"),
    ("no-val", "the split leaves no 'val' rows"),
    ("no-neg-in-val", "label\\(s\\) 'neg' have no 'val' rows"),
])
def test_bad_split_values_say_what_to_write(change, message):
    frame = _split_rows()
    if change == "no-val":
        frame["split"] = frame["split"].replace({"dev": "train", "validation": "train"})
    elif change == "no-neg-in-val":
        frame["split"] = frame["split"].replace({"validation": "train"})
    else:
        for i, v in change.items():
            frame.loc[i, "split"] = v
    with pytest.raises(DataError, match=message):
        D.prepare(frame, "bad")
