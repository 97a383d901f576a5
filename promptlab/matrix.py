"""The prompts x models matrix: the best prompt differs by model, so the top prompts of several runs are scored by
each of several models on the same test examples. Each cell carries its score, n and 95% CI; each model's best
prompt is marked; and each prompt's score on the model it was found for is set against its scores on the others
(does it transfer?).

Every call goes through `evaluate`, so it is cached and committed as it completes: a matrix stopped midway
resumes from the cache, and cells already scored by a run's own test scoring cost nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from promptlab.data import Dataset
from promptlab.errors import PromptlabError
from promptlab.evaluate import evaluate
from promptlab.export import StoredPrompt, same_model, stored_prompt
from promptlab.models import ModelSpec
from promptlab.scoring.objective import parse_objective
from promptlab.store import Store


@dataclass(frozen=True)
class MatrixRequest:
    runs: tuple[str, ...]
    models: tuple[ModelSpec, ...]
    dataset: Dataset | None = None  # None: the first run's
    top: int = 1  # prompts per run: its result, then the next best on val
    split: str = "test"
    metric: str | None = None  # None: the first run's on its own dataset, else the dataset's default


@dataclass(frozen=True)
class MatrixResult:
    cells: pd.DataFrame  # prompt, run, candidate, own_model, model, score, ci_low, ci_high, n, best_for_model
    transfer: pd.DataFrame  # prompt, own_model, own_score, others_mean, and per other model: its score
    dataset: str
    metric: str
    split: str
    notes: list[str] = field(default_factory=list)


def top_prompts(store: Store, run_id: str, top: int) -> list[StoredPrompt]:
    """A run's result, then its next best candidates by val (distinct prompts), up to `top`."""
    first = stored_prompt(store, run_id)
    out, seen = [first], {first.template.id}
    if top > 1:
        cands = store.candidates(run_id)
        scored = cands[cands["val_score"].notna()].sort_values(["val_score", "id"], ascending=[False, True])
        for cid in scored["id"]:
            sp = stored_prompt(store, run_id, int(cid))
            if sp.template.id not in seen:
                seen.add(sp.template.id)
                out.append(sp)
            if len(out) >= top:
                break
    return out


def _label(sp: StoredPrompt) -> str:
    return f"{sp.run_id} #{sp.cand_id}" if sp.cand_id is not None else sp.run_id


def score_matrix(store: Store, req: MatrixRequest, progress: dict | None = None) -> MatrixResult:
    """Score every prompt with every model on the same examples; `progress` gets cell/cells/calls as it goes."""
    if not req.runs:
        raise PromptlabError("choose at least one run whose prompts to score (--runs R1,R2)")
    if not req.models:
        raise PromptlabError("choose at least one model to score them with (--models M1,M2)")
    if req.top < 1:
        raise PromptlabError("--top must be at least 1")
    models = list({m.label: m for m in req.models}.values())  # a model named twice is one column
    prompts = [sp for run_id in dict.fromkeys(req.runs) for sp in top_prompts(store, run_id, req.top)]
    ds = req.dataset or prompts[0].dataset
    same = ds.id == prompts[0].dataset.id
    metric = parse_objective(req.metric or (prompts[0].metric if same else None), ds,
                             prompts[0].judge if same else None, store)
    notes = [f"{_label(sp)} was found on '{sp.dataset.name}', scored here on '{ds.name}'" for sp in prompts
             if sp.dataset.id != ds.id]
    for sp in prompts:
        sp.template.check(ds.input_cols)
    examples = ds.split(req.split, prompts[0].split_seed if same else None)
    progress = progress if progress is not None else {}
    total = len(prompts) * len(models)
    progress.update(cell=0, cells=total, calls=0, n=len(examples))
    rows = []
    for sp in prompts:
        for model in models:
            progress["cell"] += 1
            before = progress["calls"]

            def tick(done: int, _total: int, before=before) -> None:
                progress["calls"] = before + done

            # the run's own max_tokens where the prompt meets its own model on its own data: its test calls, cached
            mt = sp.params.get("max_tokens") if (same_model(model, sp.target) and same) else None
            res = evaluate(store, model, sp.template, ds, examples, metric, split=req.split, max_tokens=mt,
                           on_progress=tick)
            lo, hi = res.ci
            rows.append({"prompt": _label(sp), "run": sp.run_id, "candidate": sp.cand_id, "own_model": sp.target.label,
                         "model": model.label, "score": res.score, "ci_low": lo, "ci_high": hi, "n": res.n_relevant,
                         "constant": res.constant or ""})
    cells = pd.DataFrame(rows)
    best = cells.groupby("model")["score"].transform("max")
    cells["best_for_model"] = cells["score"] >= best - 1e-12
    return MatrixResult(cells, _transfer(cells), ds.name, metric.spec, req.split, notes)


def _transfer(cells: pd.DataFrame) -> pd.DataFrame:
    """Per prompt: its score on the model it was found for, against its scores on the other models."""
    out = []
    for prompt, g in cells.groupby("prompt", sort=False):
        own_model = g["own_model"].iloc[0]
        own = g[g["model"] == own_model]["score"]
        others = g[g["model"] != own_model]
        row = {"prompt": prompt, "own_model": own_model, "own_score": float(own.iloc[0]) if len(own) else None,
               "others_mean": float(others["score"].mean()) if len(others) else None}
        row |= {f"on {m}": float(s) for m, s in zip(others["model"], others["score"])}
        out.append(row)
    return pd.DataFrame(out)


def matrix_lines(result: MatrixResult) -> list[str]:
    """The matrix in words, for the CLI and the report: each model's best prompt, and each prompt's transfer."""
    lines = []
    for model, g in result.cells.groupby("model", sort=False):
        b = g.sort_values("score", ascending=False).iloc[0]
        lines.append(f"best for {model}: {b['prompt']} ({result.metric} {b['score']:.3f}, 95% CI "
                     f"[{b['ci_low']:.3f}, {b['ci_high']:.3f}], n={int(b['n'])})")
    for r in result.transfer.itertuples():
        if r.own_score is None or r.others_mean is None or r.others_mean != r.others_mean:
            continue
        lines.append(f"{r.prompt}: {r.own_score:.3f} on {r.own_model} (its own) against {r.others_mean:.3f} on the "
                     f"other model(s) on average ({r.others_mean - r.own_score:+.3f})")
    return lines
