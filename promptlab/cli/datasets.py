"""`datasets import|list|show|delete`: datasets in and out of the store, and how they read on a terminal."""
from __future__ import annotations

import json
from pathlib import Path

from promptlab.cli.common import OPTIONS, judge_args, judge_settings, open_store, print_json
from promptlab.data import import_dataset, stored_dataset
from promptlab.errors import DataError
from promptlab.scoring.objective import judge_record
from promptlab.split import DEFAULT_FRACTIONS


def register(sub) -> None:
    ds = sub.add_parser("datasets", help="import, list, show and delete datasets").add_subparsers(dest="action", metavar="ACTION")
    p = ds.add_parser("import", parents=[OPTIONS], help="import a CSV/TSV/JSON/JSONL/Parquet file")
    p.add_argument("path")
    p.add_argument("--name")
    p.add_argument("--input-col", action="append", help="input column (repeat, or comma-separate, for several)")
    p.add_argument("--label-col")
    p.add_argument("--split-fractions", help="train,val,test fractions (default 0.3,0.35,0.35)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--test-file", help="a separate file of test rows (same columns): its rows are the test split, "
                                       "the main file's are train and val. A 'split' column (train/val/test; dev "
                                       "and validation read as val) in the file is honoured the same way")
    p.add_argument("--kind", choices=["labels", "reference", "unlabeled"], default="labels",
                   help="what the target column holds: labels (default), reference answers, or nothing (unlabeled)")
    p.add_argument("--scorer", help="default scoring for a reference dataset: exact, normalized, contains, regex[:P], "
                   "numeric[:TOL], token_f1, json:FIELD, or judge")
    judge_args(p)
    p.set_defaults(func=cmd_datasets_import)
    p = ds.add_parser("list", parents=[OPTIONS], help="list stored datasets")
    p.set_defaults(func=cmd_datasets_list)
    p = ds.add_parser("show", parents=[OPTIONS], help="labels, splits and notes of a dataset")
    p.add_argument("name")
    p.set_defaults(func=cmd_datasets_show)
    p = ds.add_parser("delete", parents=[OPTIONS], help="delete a stored dataset")
    p.add_argument("name")
    p.set_defaults(func=cmd_datasets_delete)


def _split_cols(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


def _fractions(text: str | None):
    if not text:
        return DEFAULT_FRACTIONS
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise DataError(f"--split-fractions '{text}' must be three numbers like 0.3,0.35,0.35") from None
    return parts


def _scoring_args(args) -> dict | None:
    """--scorer / --judge / --rubric / --scale into a scoring record (None when none is given)."""
    judge = judge_record(judge_settings(args))  # no dataset yet: what is not given takes the defaults
    metric = getattr(args, "scorer", None) or getattr(args, "metric", None)
    if not (judge or getattr(args, "scorer", None)):
        return None
    return {"metric": metric, **({"judge": judge} if judge else {})}


def cmd_datasets_import(args) -> int:
    store = open_store(args)
    ds, reused = import_dataset(
        store, Path(args.path), name=args.name, input_cols=_split_cols(args.input_col), label_col=args.label_col,
        fractions=_fractions(args.split_fractions), split_seed=args.split_seed, kind=args.kind,
        scoring=_scoring_args(args), test_file=args.test_file,
    )
    info = _dataset_info(ds) | {"reused": reused}
    if args.json:
        print_json(info)
        return 0
    verb = "already stored, reused" if reused else "imported"
    target = {"labels": f"label {ds.label_col}", "reference": f"reference {ds.label_col}"}.get(ds.kind, "no target")
    print(f"{verb}: '{ds.name}' (id {ds.id}), {ds.n} rows, input {', '.join(ds.input_cols)}, {target}")
    _print_dataset_details(ds)
    return 0


def _dataset_info(ds) -> dict:
    counts = {}
    for split in ("train", "val", "test"):
        counts[split] = len(ds.split(split))
    return {
        "id": ds.id, "name": ds.name, "kind": ds.kind, "n_rows": ds.n, "input_cols": list(ds.input_cols),
        "label_col": ds.label_col, "labels": ds.report.label_counts or {lab: 0 for lab in ds.labels}, "splits": counts,
        "scoring": _public_scoring(ds.scoring), "notes": ds.report.notes(), "own_split": ds.own_split,
    }


def _public_scoring(scoring: dict | None) -> dict:
    """A dataset's scoring for display: the judge model by its label, never its whole record."""
    out = dict(scoring or {})
    if out.get("judge"):
        j = out["judge"]
        model = j.get("model")
        out["judge"] = {**j, "model": model.get("name") or model.get("model") if isinstance(model, dict) else model}
    return out


def _print_dataset_details(ds) -> None:
    info = _dataset_info(ds)
    if ds.kind == "labels":
        width = max(len(lab) for lab in info["labels"])
        print("labels:")
        for lab, n in info["labels"].items():
            print(f"  {lab:<{width}}  {n:>6}  ({n / ds.n:.1%})")
    else:
        what = "a reference answer per row" if ds.kind == "reference" else "no target: outputs are judged or graded by hand"
        print(f"kind: {ds.kind} ({what})")
        sc = info["scoring"]
        if sc:
            judge = sc.get("judge")
            print(f"scoring: {sc.get('metric') or 'default'}" + (f"; judge {judge['model']} ({judge['lo']}-{judge['hi']}), "
                                                                   f"rubric: {judge['rubric'][:120]}" if judge else ""))
    s = info["splits"]
    how = ("the data's own (its split column or test file; rows left blank: train or val by seed "
           f"{ds.split_seed})" if ds.own_split else f"seed {ds.split_seed}")
    print(f"splits: train {s['train']}, val {s['val']}, test {s['test']} ({how})")
    for note in info["notes"]:
        print(f"note: {note}")


def cmd_datasets_list(args) -> int:
    frame = open_store(args).list_datasets()
    if args.json:
        print_json(frame.to_dict(orient="records"))
        return 0
    if frame.empty:
        print("no datasets stored yet: python -m promptlab datasets import PATH")
        return 0
    for row in frame.itertuples():
        labels = json.loads(row.labels)
        what = f"{len(labels)} labels" if row.kind == "labels" else row.kind
        print(f"{row.name:<28} {row.n_rows:>7} rows  {what:<10}  id {row.id}  from {row.source}")
    return 0


def cmd_datasets_show(args) -> int:
    ds = stored_dataset(open_store(args), args.name)
    if args.json:
        print_json(_dataset_info(ds))
        return 0
    print(f"'{ds.name}' (id {ds.id}), {ds.n} rows, input {', '.join(ds.input_cols)}, label {ds.label_col}")
    _print_dataset_details(ds)
    return 0


def cmd_datasets_delete(args) -> int:
    store = open_store(args)
    ds = stored_dataset(store, args.name)
    store.delete_dataset(ds.id)
    print(f"deleted dataset '{ds.name}' ({ds.n} rows)")
    return 0
