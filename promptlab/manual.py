"""Scoring prompts on request: a few side by side on the same examples, one written prompt or a stored run's prompt
on any dataset and model (kept as an eval run), and a preview of the meta-prompt."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pandas as pd

from promptlab.cost import cost_of_calls
from promptlab.data import Dataset, resolve_dataset, stratified_sample
from promptlab.errors import PromptlabError
from promptlab.evaluate import EvalResult, PromptTemplate, evaluate
from promptlab.export import StoredPrompt, same_model, stored_prompt, transfer_notes
from promptlab.models import ModelSpec, resolve_model
from promptlab.optimize import prompts as P
from promptlab.optimize.base import template_text
from promptlab.runs import DEFAULT_BASELINES
from promptlab.scoring import Objective
from promptlab.scoring.objective import JudgeSettings, judge_record, parse_objective
from promptlab.store import Store


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
class Comparison:
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


def compare(store: Store, spec: ModelSpec, templates: list[PromptTemplate], dataset: Dataset, split: str,
            metric_spec: str, progress: dict | None = None, judge: dict | None = None) -> Comparison:
    """Evaluate each prompt on the same split (cached calls are free); progress is updated in place.
    `metric_spec`: a label metric, or for other datasets a scorer or "judge" (with `judge`)."""
    metric = parse_objective(metric_spec, dataset, judge, store)
    examples = dataset.split(split)
    progress = progress if progress is not None else {}
    progress.update(prompt=0, of=len(templates), calls=0, n=len(examples))
    results = []
    for i, t in enumerate(templates, 1):
        progress["prompt"] = i
        before = progress["calls"]

        def tick(done: int, total: int, before=before) -> None:
            progress["calls"] = before + done

        results.append(evaluate(store, spec, t, dataset, examples, metric, split=split, on_progress=tick))
    return Comparison(tuple(results))


def eval_run(store: Store, spec: ModelSpec, prompt: PromptTemplate, dataset: Dataset, metric, *, split: str,
             seed: int | None = None, limit: int | None = None, max_tokens: int | None = None,
             extra: dict | None = None, on_progress=None) -> tuple[EvalResult, dict]:
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
                          run_id=run_id, on_progress=on_progress)
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


def score_prompt(store: Store, req: EvalRequest, on_progress=None) -> tuple[EvalResult, dict, StoredPrompt | None]:
    """The job behind `promptlab eval`, kept as an eval run: its result, its summary (with `notes`), and the stored
    prompt it scored (None for a written one). `on_progress(done, total)` as calls complete."""
    if req.run_id:
        other = resolve_dataset(store, req.dataset) if req.dataset else None
        # the stored prompt's own dataset is needed here only to complete a judge asked for (score_elsewhere reads it)
        dataset = other or (stored_prompt(store, req.run_id, req.cand_id).dataset if req.judge else None)
        model = resolve_model(req.model, store) if req.model else None
        summary = score_elsewhere(store, ElsewhereRequest(
            req.run_id, req.cand_id, other, model, req.split, req.metric, judge_record(req.judge, dataset), req.limit,
            req.seed, req.max_tokens), on_progress)
        result, stored = summary.pop("result"), summary.pop("stored")
        summary.pop("line")
        summary["per_call"] = cost_of_calls(store, result.rows["call_key"]).to_record()
        return result, summary, stored
    if req.cand_id is not None:
        raise PromptlabError("--candidate picks a prompt of a stored run: give --run RUN with it")
    if not req.dataset or not req.model or req.prompt is None:
        raise PromptlabError("give --dataset and --model with --prompt or --prompt-file (or --run RUN to score a "
                             "stored prompt on its own dataset and target)")
    dataset = resolve_dataset(store, req.dataset)
    spec = resolve_model(req.model, store)
    req.prompt.check(dataset.input_cols)
    metric = parse_objective(req.metric, dataset, judge_record(req.judge, dataset), store)
    result, summary = eval_run(store, spec, req.prompt, dataset, metric, split=req.split, seed=req.seed,
                               limit=req.limit, max_tokens=req.max_tokens, on_progress=on_progress)
    summary["notes"] = []
    summary["per_call"] = cost_of_calls(store, result.rows["call_key"]).to_record()
    return result, summary, None


def preview_meta_prompt(store: Store, dataset: Dataset, template: str, task: str, metric: Objective,
                        runs_table: pd.DataFrame) -> str:
    """The meta-prompt as the next round would see it: history from the latest run on this dataset."""
    history: list[P.ScoredPrompt] = []
    mine = runs_table[(runs_table["kind"] == "optimize") & (runs_table["dataset"] == dataset.name)] if len(runs_table) else runs_table
    if len(mine):
        cands = store.candidates(mine.iloc[0]["id"])
        scored = cands[cands["val_score"].notna()].sort_values("val_score", ascending=False).head(4)
        history = [P.ScoredPrompt(t, v) for t, v in zip(scored["text"], scored["val_score"])]
    if not history:
        saved = store.baselines(dataset.id) if dataset.id else []
        texts = [template_text(PromptTemplate(s, u)) for _, s, u in saved] or [DEFAULT_BASELINES[dataset.kind]]
        history = [P.ScoredPrompt(t, float("nan")) for t in texts]
    train = dataset.split("train")
    shown = train.drop_duplicates("label_norm").head(8) if dataset.has_labels else train.head(3)
    parts = P.MetaPromptParts(
        task=task, metric=metric.describe(), labels=dataset.labels, history=tuple(history),
        examples=tuple(zip(shown["text"], shown["label"])), n=2, score_range=metric.range, kind=dataset.kind,
    )
    return P.build_meta_prompt(template, parts)


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


def score_elsewhere(store: Store, req: ElsewhereRequest, on_progress=None) -> dict:
    """The job behind `promptlab eval --run` and the Results page's "score it elsewhere": kept as an eval run.
    On the run's own dataset and target the calls are the run's own (cached). Returns the eval's summary with
    `line` (one sentence) and `notes`; `on_progress(done, total)` as calls complete."""
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
    result, summary = eval_run(store, spec, sp.template, ds, metric, split=req.split, seed=seed, limit=req.limit,
                               max_tokens=max_tokens, extra={"from": {"run": sp.run_id, "candidate": sp.cand_id}},
                               on_progress=on_progress)
    which = f"candidate #{sp.cand_id}" if sp.cand_id is not None else "its prompt"
    lo, hi = result.ci
    summary.update(
        stored=sp, result=result, notes=transfer_notes(sp, ds),
        line=f"Run {sp.run_id}, {which}, on {ds.name} ({req.split}, n={result.n_relevant}) with {spec.label}: "
             f"{metric.spec} {result.score:.3f}, 95% CI [{lo:.3f}, {hi:.3f}] ({result.calls} new calls, "
             f"{result.cached} cached).")
    return summary
