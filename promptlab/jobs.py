"""Scoring jobs: "score these prompts with these models on these examples", as the CLI, the dashboard's workers and
the pages ask for them, each reporting one `Progress`. Several prompts side by side with one model
(`score_prompts`); one prompt kept as an eval run (`run_eval`, `promptlab eval`); a stored prompt on another dataset
or model (`score_elsewhere`); a stored candidate on a split (`candidate_result`); prompts x models (`score_matrix`).
Every call goes through the cache, so a job asked again costs only the calls it has not made yet.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pandas as pd

from promptlab.cost import cost_of_calls
from promptlab.data import Dataset, resolve_dataset
from promptlab.errors import PromptlabError
from promptlab.evaluate import EvalResult, evaluate
from promptlab.export import StoredPrompt, same_model, stored_prompt, transfer_notes
from promptlab.models import ModelSpec, resolve_model
from promptlab.progress import Progress
from promptlab.prompt import PromptTemplate
from promptlab.scoring.objective import JudgeSettings, judge_record, parse_objective
from promptlab.split import stratified_sample
from promptlab.store import Store


# --- several prompts, one model, side by side ------------------------------------------------------

def templates_from_texts(texts: list[str], dataset: Dataset) -> list[PromptTemplate]:
    templates = []
    for i, text in enumerate(texts, 1):
        if not text.strip():
            raise PromptlabError(f"prompt {i} is empty: write it, or lower the number of prompts")
        t = PromptTemplate.from_text(text)
        try:
            t.check(dataset.input_cols)
        except PromptlabError as exc:
            raise PromptlabError(f"prompt {i}: {exc}") from None
        templates.append(t)
    return templates


@dataclass(frozen=True)
class PromptScores:
    """Several prompts scored with one model on the same examples (the side-by-side comparison)."""

    results: tuple[EvalResult, ...]

    def table(self) -> pd.DataFrame:
        rows = []
        for i, r in enumerate(self.results, 1):
            lo, hi = r.ci
            rows.append({
                "prompt": i, "score": round(r.score, 4), "95% CI": f"[{lo:.3f}, {hi:.3f}]", "n": r.n_relevant,
                "invalid": f"{r.invalid_rate:.1%}", "new calls": r.calls, "cached": r.cached,
                "text": " ".join((r.prompt.system + " " + r.prompt.user).split())[:120],
            })
        return pd.DataFrame(rows)

    def disagreements(self) -> pd.DataFrame:
        """Examples where the prompts' predictions differ, with each prompt's reply."""
        base = self.results[0].rows[["example_idx", "text", "gold"]].copy()
        preds = []
        scored = self.results[0].scored
        for i, r in enumerate(self.results, 1):
            if scored:  # compare scores; show each reply with its score
                base[f"score {i}"] = r.rows["score"].to_numpy()
                base[f"prompt {i}"] = r.rows["reply"].fillna("(no reply)").to_numpy()
                preds.append(f"score {i}")
            else:
                base[f"prompt {i}"] = r.rows["pred"].where(r.rows["pred"].notna(), "(invalid)").to_numpy()
                preds.append(f"prompt {i}")
        if len(preds) < 2:
            return base.iloc[0:0]
        differ = base[preds].nunique(axis=1) > 1
        return base[differ].reset_index(drop=True)


def score_prompts(store: Store, spec: ModelSpec, templates: list[PromptTemplate], dataset: Dataset, split: str,
                  metric_spec: str, progress: Progress | None = None, judge: dict | None = None) -> PromptScores:
    """Evaluate each prompt on the same split (cached calls are free).
    `metric_spec`: a label metric, or for other datasets a scorer or "judge" (with `judge`)."""
    metric = parse_objective(metric_spec, dataset, judge, store)
    examples = dataset.split(split)
    progress = progress if progress is not None else Progress()
    results = []
    for i, t in enumerate(templates, 1):
        progress.begin(i, len(templates), f"prompt {i} of {len(templates)} on {len(examples)} examples")
        results.append(evaluate(store, spec, t, dataset, examples, metric, split=split, progress=progress))
    return PromptScores(tuple(results))


# --- one prompt, kept as an eval run ---------------------------------------------------------------

def record_eval(store: Store, spec: ModelSpec, prompt: PromptTemplate, dataset: Dataset, metric, *, split: str,
             seed: int | None = None, limit: int | None = None, max_tokens: int | None = None,
             extra: dict | None = None, progress: Progress | None = None) -> tuple[EvalResult, dict]:
    """Score one prompt on a split (with `seed`: that split seed; with `limit`: a stratified sample of it) and keep
    it as an `eval` run (its config, then its summary), as `promptlab eval` and the Results page's "score this
    prompt elsewhere" both do. A run stopped midway is marked interrupted or failed; every call it made is already
    committed, so the same eval again asks only the rest."""
    examples = dataset.split(split, seed=seed)
    if limit is not None:
        if limit < 1:
            raise PromptlabError("--limit must be at least 1")
        examples = stratified_sample(examples, limit, seed=seed or 0)
    run_id = "eval-" + uuid.uuid4().hex[:10]
    config = {"dataset": dataset.name, "model": spec.to_record(), "prompt": prompt.to_record(), "split": split,
              "metric": metric.spec, "limit": limit, "seed": seed, "max_tokens": max_tokens, **(extra or {})}
    store.create_run(run_id, "eval", dataset.id, config)
    try:
        result = evaluate(store, spec, prompt, dataset, examples, metric, split=split, max_tokens=max_tokens,
                          run_id=run_id, progress=progress)
    except BaseException as exc:
        store.finish_run(run_id, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", error=str(exc)[:500])
        raise
    summary = result.summary() | {"run_id": run_id, "dataset": dataset.name}
    store.finish_run(run_id, "finished", summary)
    return result, summary


@dataclass(frozen=True)
class EvalRequest:
    """`promptlab eval` by name: a written `prompt` on `dataset` with `model`, or a stored one (`run_id`, and
    `cand_id` for a candidate other than its result) on its own dataset and target unless others are named."""

    dataset: str | None = None  # a stored dataset's name or id, or a file path to import
    model: str | None = None
    prompt: PromptTemplate | None = None
    run_id: str | None = None
    cand_id: int | None = None
    split: str = "test"
    metric: str | None = None  # None: the run's on its own dataset, else the dataset's default
    judge: JudgeSettings | None = None
    limit: int | None = None
    seed: int | None = None  # the split seed
    max_tokens: int | None = None


def run_eval(store: Store, req: EvalRequest, progress: Progress | None = None) -> tuple[EvalResult, dict, StoredPrompt | None]:
    """The job behind `promptlab eval`, kept as an eval run: its result, its summary (with `notes`, and `per_call`:
    what a call cost), and the stored prompt it scored (None for a written one)."""
    result, summary, stored = (_eval_stored if req.run_id else _eval_written)(store, req, progress)
    summary["per_call"] = cost_of_calls(store, result.rows["call_key"]).to_record()
    return result, summary, stored


def _eval_stored(store: Store, req: EvalRequest, progress: Progress | None) -> tuple[EvalResult, dict, StoredPrompt]:
    """A stored prompt (`req.run_id`, `req.cand_id`) scored as asked, on its own dataset and target by default."""
    other = resolve_dataset(store, req.dataset) if req.dataset else None
    # the stored prompt's own dataset is needed here only to complete a judge asked for (score_elsewhere reads it)
    dataset = other or (stored_prompt(store, req.run_id, req.cand_id).dataset if req.judge else None)
    model = resolve_model(req.model, store) if req.model else None
    summary = score_elsewhere(store, ElsewhereRequest(
        req.run_id, req.cand_id, other, model, req.split, req.metric, judge_record(req.judge, dataset), req.limit,
        req.seed, req.max_tokens), progress)
    result, stored = summary.pop("result"), summary.pop("stored")
    summary.pop("line")
    return result, summary, stored


def _eval_written(store: Store, req: EvalRequest, progress: Progress | None) -> tuple[EvalResult, dict, None]:
    """A prompt written out (`req.prompt`) scored with `req.model` on `req.dataset`."""
    if req.cand_id is not None:
        raise PromptlabError("--candidate picks a prompt of a stored run: give --run RUN with it")
    if not req.dataset or not req.model or req.prompt is None:
        raise PromptlabError("give --dataset and --model with --prompt or --prompt-file (or --run RUN to score a "
                             "stored prompt on its own dataset and target)")
    dataset = resolve_dataset(store, req.dataset)
    spec = resolve_model(req.model, store)
    req.prompt.check(dataset.input_cols)
    metric = parse_objective(req.metric, dataset, judge_record(req.judge, dataset), store)
    result, summary = record_eval(store, spec, req.prompt, dataset, metric, split=req.split, seed=req.seed,
                                  limit=req.limit, max_tokens=req.max_tokens, progress=progress)
    summary["notes"] = []
    return result, summary, None


@dataclass(frozen=True)
class ElsewhereRequest:
    """Score a stored prompt (a run's result, or one candidate) on a dataset and model, its own by default."""

    run_id: str
    cand_id: int | None = None
    dataset: Dataset | None = None  # None: the run's
    model: ModelSpec | None = None  # None: the run's target
    split: str = "test"
    metric: str | None = None  # None: the run's on its own dataset, else the dataset's default
    judge: dict | None = None
    limit: int | None = None
    seed: int | None = None  # the split seed (None: the run's on its own dataset)
    max_tokens: int | None = None


def score_elsewhere(store: Store, req: ElsewhereRequest, progress: Progress | None = None) -> dict:
    """The job behind `promptlab eval --run` and the Results page's "score it elsewhere": kept as an eval run.
    On the run's own dataset and target the calls are the run's own (cached). Returns the eval's summary with
    `line` (one sentence) and `notes`."""
    sp = stored_prompt(store, req.run_id, req.cand_id)
    ds = req.dataset or sp.dataset
    spec = req.model or sp.target
    same_data = ds.id == sp.dataset.id
    max_tokens = req.max_tokens
    if max_tokens is None and same_data and same_model(spec, sp.target):
        max_tokens = sp.params.get("max_tokens")  # the run's own requests: answered from the cache
    sp.template.check(ds.input_cols)
    metric_spec = req.metric or (sp.metric if same_data else None)
    metric = parse_objective(metric_spec, ds, req.judge or (sp.judge if same_data else None), store)
    seed = req.seed if req.seed is not None or not same_data else sp.split_seed  # the run's own split by default
    result, summary = record_eval(store, spec, sp.template, ds, metric, split=req.split, seed=seed, limit=req.limit,
                               max_tokens=max_tokens, extra={"from": {"run": sp.run_id, "candidate": sp.cand_id}},
                               progress=progress)
    which = f"candidate #{sp.cand_id}" if sp.cand_id is not None else "its prompt"
    lo, hi = result.ci
    summary.update(
        stored=sp, result=result, notes=transfer_notes(sp, ds),
        line=f"Run {sp.run_id}, {which}, on {ds.name} ({req.split}, n={result.n_relevant}) with {spec.label}: "
             f"{metric.spec} {result.score:.3f}, 95% CI [{lo:.3f}, {hi:.3f}] ({result.calls} new calls, "
             f"{result.cached} cached).")
    return summary


# --- a stored candidate on a split ------------------------------------------------------------------

def candidate_result(store: Store, run_id: str, cand_id: int, split: str, target: ModelSpec, dataset: Dataset,
                     metric, progress: Progress | None = None) -> EvalResult:
    """A stored candidate's prompt (with its demos) scored on one split. With the run's own split seed and
    max_tokens the requests are the run's own, so whatever the run scored comes from the cache."""
    row = store.candidates(run_id).set_index("id").loc[cand_id].to_dict()
    config = store.run_row(run_id)["config"]
    return evaluate(store, target, PromptTemplate.from_record(row), dataset,
                    dataset.split(split, config.get("split_seed")), metric, split=split,
                    max_tokens=config.get("max_tokens"), progress=progress)


def candidate_test_rows(store: Store, run_id: str, cand_id: int, target: ModelSpec, dataset: Dataset,
                        metric) -> pd.DataFrame:
    """A stored candidate's prompt scored on the test split, one row per example in example order. The run
    scored its finalists on test, so this comes from the cache."""
    res = candidate_result(store, run_id, cand_id, "test", target, dataset, metric)
    return res.rows.sort_values("example_idx").reset_index(drop=True)


# --- prompts x models ------------------------------------------------------------------------------

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


def score_matrix(store: Store, req: MatrixRequest, progress: Progress | None = None) -> MatrixResult:
    """Score every prompt with every model on the same examples."""
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
    progress = progress if progress is not None else Progress()
    cells = len(prompts) * len(models)
    rows = []
    for sp in prompts:
        for model in models:
            progress.begin(len(rows) + 1, cells, f"cell {len(rows) + 1} of {cells} on {len(examples)} examples")
            # the run's own max_tokens where the prompt meets its own model on its own data: its test calls, cached
            mt = sp.params.get("max_tokens") if (same_model(model, sp.target) and same) else None
            res = evaluate(store, model, sp.template, ds, examples, metric, split=req.split, max_tokens=mt,
                           progress=progress)
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
