"""Export promptlab's default train/val/test splits of each task as JSON, for benchmarks/dspy_bench.py.

Runs in PROMPTLAB's venv (it imports the CSVs with promptlab's own import, so DSPy sees exactly the rows,
`idx` values and label forms promptlab uses: the default 0.3/0.35/0.35 stratified split, seed 0):

    .venv/bin/python benchmarks/export_splits.py --data-dir ../shared/datasets --out benchmarks/splits
    .venv/bin/python benchmarks/export_splits.py --tasks implicatures --out benchmarks/splits

Writes OUT/<task>.json = {"task", "labels", "content_hash", "train": [{"idx", "text", "label"}, ...], "val", "test"}.
The datasets are imported into a throwaway DuckDB file (--db, default a temporary file), never the
user's promptlab database.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from promptlab.data import import_dataset  # noqa: E402
from promptlab.store import Store  # noqa: E402


def rows(frame) -> list[dict]:
    return [{"idx": int(r.idx), "text": str(r.text), "label": str(r.label)} for r in frame.itertuples(index=False)]


def export_task(store: Store, csv: Path, out_dir: Path) -> dict:
    ds = import_dataset(store, csv)[0]
    if not ds.has_labels:
        raise SystemExit(f"{csv}: no label column found; this benchmark needs labeled tasks")
    doc = {"task": csv.stem, "labels": list(ds.labels), "content_hash": ds.content_hash}
    for split in ("train", "val", "test"):
        doc[split] = rows(ds.split(split))
    path = out_dir / f"{csv.stem}.json"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1))
    return doc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"),
                    help="folder of task CSVs (default: ../shared/datasets)")
    ap.add_argument("--tasks", default="", help="comma-separated task names (CSV stems); default all")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "splits"), help="output folder of <task>.json")
    ap.add_argument("--db", default="", help="DuckDB file to import into (default: a temporary file, deleted after)")
    args = ap.parse_args(argv)

    csvs = sorted(Path(args.data_dir).glob("*.csv"))
    wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if wanted:
        missing = set(wanted) - {c.stem for c in csvs}
        if missing:
            raise SystemExit(f"no CSV for task(s) {', '.join(sorted(missing))} in {args.data_dir}")
        csvs = [c for c in csvs if c.stem in wanted]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    tmp = None
    if args.db:
        db = Path(args.db)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="promptlab-export-"))
        db = tmp / "export.duckdb"
    store = Store(db)
    try:
        for csv in csvs:
            doc = export_task(store, csv, out_dir)
            print(f"{doc['task']}: labels={doc['labels']} train={len(doc['train'])} val={len(doc['val'])} "
                  f"test={len(doc['test'])} -> {out_dir / (doc['task'] + '.json')}")
    finally:
        store.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
