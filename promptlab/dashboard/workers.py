"""The long jobs pages hand to worker threads: optimization runs, studies, and scoring a candidate on a split."""
from __future__ import annotations

from promptlab import results, runs, study
from promptlab.dashboard.job_registry import Job, jobs, live_runs, start_job
from promptlab.dashboard.readers import get_store
from promptlab.data import Dataset
from promptlab.errors import PromptlabError
from promptlab.models import ModelSpec

# Scoring from the cache alone takes tens of milliseconds: waiting this long lets the first render show it,
# while a model call goes on in the worker and the page's fragment polls for it.
CACHED_WAIT_S = 0.5


def start_run(run_id: str) -> Job:
    """Execute (or resume) an optimization run in the background (never one a study is executing)."""
    store = get_store()
    if run_id in live_runs() and run_id not in jobs():
        raise PromptlabError(f"run {run_id} is being executed by a study right now")
    return start_job(run_id, "run", lambda job: runs.execute(store, run_id, stop=job.stop))


def start_study(study_id: str) -> Job:
    """Execute (or resume) a study's runs in the background, one after another."""
    store = get_store()

    def work(job: Job):
        def on_run(i, n, member):
            job.progress.update(run_id=member.run_id, index=i + 1, total=n)
        return study.execute_study(store, study_id, on_run=on_run, stop=job.stop)

    return start_job(study_id, "study", work)


def score_candidate(run_id: str, cand_id: int, split: str, dataset: Dataset, target: ModelSpec, metric) -> str:
    """Score a run's candidate on a split in a worker (results.candidate_result, progress as `done`/`total` new
    calls) and return the job's key for job_result. Once per candidate and split; again after a failure."""
    key = f"candidate:{run_id}:{cand_id}:{split}"
    job = jobs().get(key)
    if job is None or job.error:
        store = get_store()
        job = start_job(key, "candidate", lambda job: results.candidate_result(
            store, run_id, cand_id, split, target, dataset, metric,
            on_progress=lambda done, total: job.progress.update(done=done, total=total)))
        job.thread.join(CACHED_WAIT_S)
    return key
