"""Datasets: upload any format the core reads, preview, map columns, see labels (or reference answers), set the split; list and delete."""
import streamlit as st

from promptlab import charts
from promptlab import dashboard as ui
from promptlab.data import import_dataset, prepare, with_test_file
from promptlab.errors import DataError
from promptlab.read import detect_columns, guess_kind, is_split_column, read_table
from promptlab.split import DEFAULT_FRACTIONS

KIND_NAMES = {"labels": "a label", "reference": "a reference answer", "unlabeled": "nothing (grade the outputs)"}

st.set_page_config(page_title="promptlab · Datasets", layout="wide")
ui.sidebar_nav()
st.title("Datasets")
ui.ensure_demo_dataset()
store = ui.get_store()

st.subheader("Upload a dataset")
upload = st.file_uploader(
    "CSV, TSV, JSONL, JSON (records or BIG-bench task.json) or Parquet; UTF-8, UTF-8 with BOM or cp1251",
    # Any file is accepted here, so that a spreadsheet or a .docx gets our message saying what to export it
    # as, rather than the uploader's bare 'file type not allowed'.
    type=None, key="datasets.upload",
)
test_upload = st.file_uploader(
    "Test file (optional): your own test rows, same columns. The main file's rows are then train and val. "
    "(A 'split' column with train / val / test, or dev, is honoured the same way.)", type=None,
    key="datasets.test_upload")
if upload is not None:
    try:
        frame = read_table(upload.getvalue(), upload.name)
        n_main = len(frame)
        if test_upload is not None:
            frame = with_test_file(frame, read_table(test_upload.getvalue(), test_upload.name), upload.name,
                                   test_upload.name)
    except DataError as exc:
        st.error(str(exc))
        st.stop()
    st.caption(f"{upload.name}: {n_main} rows" + (f", and {len(frame) - n_main} test rows from {test_upload.name}"
                                                  if test_upload is not None else "")
               + f"; columns {', '.join(c for c in frame.columns if c != 'split' or test_upload is None)}")
    st.dataframe(frame.head(8), hide_index=True, width="stretch")
    if st.session_state.get("datasets.kind_for") != upload.name:  # a new file: preselect what its rows look like
        st.session_state["datasets.kind_for"] = upload.name
        st.session_state["datasets.kind"] = guess_kind(frame, upload.name)
    kind = st.radio("What does each row carry besides its input?", list(KIND_NAMES), format_func=KIND_NAMES.get,
                    horizontal=True, key="datasets.kind",
                    help="Labels: classification, scored by a metric. Reference answers: each reply is compared with "
                         "the reference (exact, numeric, token F1, … or an LLM judge). Nothing: replies are graded by "
                         "an LLM judge with your rubric, or by hand.")
    try:
        guess_inputs, guess_label = detect_columns(frame, filename=upload.name, kind=kind)
    except DataError:
        guess_inputs, guess_label = [frame.columns[0]], frame.columns[-1]
    cols = [c for c in frame.columns if not is_split_column(c)]  # the data's own split, not a column to map
    c1, c2 = st.columns(2)
    label_col = ""
    if kind != "unlabeled":
        label_col = c1.selectbox("Label column" if kind == "labels" else "Reference answer column", cols,
                                 index=cols.index(guess_label) if guess_label in cols else len(cols) - 1,
                                 key="datasets.label_col")
    input_cols = c2.multiselect("Input column(s)", [c for c in cols if c != label_col],
                                default=[c for c in guess_inputs if c != label_col], key="datasets.input_cols")
    c3, c4, c5, c6 = st.columns(4)
    train = c3.number_input("train share", 0.05, 0.9, DEFAULT_FRACTIONS[0], 0.05, key="datasets.train")
    val = c4.number_input("val share", 0.05, 0.9, DEFAULT_FRACTIONS[1], 0.05, key="datasets.val")
    own_split = test_upload is not None or any(is_split_column(c) for c in frame.columns)
    c5.metric("test share", "yours" if own_split else f"{max(0.0, 1 - train - val):.2f}",
              help="Your own split sets the test rows; the train and val shares divide the rows it leaves blank."
              if own_split else None)
    seed = c6.number_input("split seed", 0, 10_000, 0, key="datasets.seed")
    name = st.text_input("Name", value=upload.name.rsplit(".", 1)[0], key="datasets.name")
    fractions = (float(train), float(val), round(1 - float(train) - float(val), 6))
    try:
        preview = prepare(frame, name, input_cols, label_col or None, fractions, int(seed), filename=upload.name,
                          kind=kind)
    except DataError as exc:
        st.error(str(exc))
        st.stop()
    if kind == "labels":
        st.plotly_chart(charts.label_distribution(preview.report.label_counts, "Label distribution"), width="stretch")
    elif kind == "reference":
        lengths = preview.frame["label"].str.len()
        st.caption(f"Reference answers: {lengths.min()}–{lengths.max()} characters (median {int(lengths.median())}). "
                   "Choose how replies are scored against them on the Prompts and proposers page.")
    else:
        st.caption("No target column: replies will be graded by an LLM judge with your rubric, or by hand "
                   "(both on the Prompts and proposers page).")
    splits = {s: len(preview.split(s)) for s in ("train", "val", "test")}
    how = "stratified" if kind == "labels" else "random"
    if preview.own_split:
        how = f"your own split; rows it leaves blank go to train or val by seed {seed}"
    st.caption(f"Split: train {splits['train']}, val {splits['val']}, test {splits['test']} ({how})")
    for note in preview.report.notes():
        st.info(note)
    if st.button("Import dataset", type="primary", key="datasets.import"):
        try:
            ds, reused = import_dataset(store, upload.getvalue(), filename=upload.name, name=name,
                                        input_cols=input_cols, label_col=label_col or None, fractions=fractions,
                                        split_seed=int(seed), kind=kind,
                                        test_file=(test_upload.getvalue(), test_upload.name) if test_upload else None)
        except DataError as exc:
            st.error(str(exc))
        else:
            ui.clear_readers()
            ui.remember("dataset", ds.name)  # the other pages start from the dataset just imported
            st.success(f"{'Already stored as' if reused else 'Imported'} '{ds.name}' ({ds.n} rows).")

st.subheader("Stored datasets")
table = ui.datasets_table()
shown = table[["name", "kind", "n_rows", "label_col", "input_cols", "labels", "source", "created_at"]]
st.dataframe(ui.in_words(shown), hide_index=True, width="stretch")
if len(table):
    c1, c2 = st.columns([3, 1])
    victim = c1.selectbox("Delete a dataset", table["name"], index=None, placeholder="choose…", key="datasets.delete_pick")
    if c2.button("Delete", disabled=victim is None, key="datasets.delete"):
        store.delete_dataset(table.set_index("name").loc[victim, "id"])
        ui.clear_readers()
        st.success(f"Deleted '{victim}'. Its runs and cached calls stay in the store.")
        st.rerun()
