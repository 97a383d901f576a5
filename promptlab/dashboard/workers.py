"""The long jobs pages hand to worker threads: optimization runs, studies, and scoring a candidate on a split."""
from __future__ import annotations

from promptlab import group, results, runs, study
from promptlab.dashboard.job_registry import Job, jobs, live_runs, start_job
from promptlab.dashboard.readers import get_store
from promptlab.data import Dataset
from promptlab.errors import PromptlabError
from promptlab.models import ModelSpec

# Scoring from the cache alone takes tens of milliseconds: waiting this long lets the first render show it,
# while a model call goes on in the worker and the page's fragment polls for it.
CACHED_WAIT_S = 0.5
ANALYSIS_WAIT_S = 2.0  # a study's analysis from the cache: its bootstraps take a second or so


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


def start_group(group_id: str) -> Job:
    """Execute (or resume) a group's searches in the background, one target after another, then cross-score each
    result on every model of the group (so Results reads the prompts x models matrix from the cache)."""
    store = get_store()

    def work(job: Job):
        def on_run(i, n, member):
            job.progress.update(run_id=member.run_id, index=i + 1, total=n)
        frame = group.execute_group(store, group_id, on_run=on_run, stop=job.stop)
        if not job.stop.is_set() and (frame["status"] == "finished").all():
            job.progress.pop("run_id", None)
            group.matrix(store, group_id, job.progress)
        return frame

    return start_job(group_id, "study", work)  # a study's kind: its current run counts as live


def group_matrix(group_id: str) -> str:
    """A group's prompts x models matrix in a worker (from the cache once the group's job has scored it)."""
    store = get_store()
    return _start_once(f"group-matrix:{group_id}", "analysis", lambda job: group.matrix(store, group_id, job.progress),
                       ANALYSIS_WAIT_S)


def _start_once(key: str, kind: str, work, wait_s: float) -> str:
    """Start work under `key` unless a job there has run or is running well (a failed one starts again), then give
    it `wait_s` to finish, so what the cache answers at once shows in the first render; returns the key."""
    job = jobs().get(key)
    if job is None or job.error:
        start_job(key, kind, work).thread.join(wait_s)
    return key


def analyze_study(study_id: str) -> str:
    """Analyse a study in a worker (its cells and head-to-head pairs; the test scores come from the cache, and a
    cache miss is a model call that must not block a page) and return the job's key. One analysis per count of
    finished runs, kept while the server runs: it is redone when another run of the study finishes."""
    store = get_store()
    members = store.study_members(study_id)
    key = f"study-analysis:{study_id}:{int((members['status'] == 'finished').sum())}"
    return _start_once(key, "analysis", lambda job: (study.analyze(store, study_id),
                                                     study.head_to_head(store, study_id)), ANALYSIS_WAIT_S)


def score_candidate(run_id: str, cand_id: int, split: str, dataset: Dataset, target: ModelSpec, metric) -> str:
    """Score a run's candidate on a split in a worker (results.candidate_result, progress as `done`/`total` new
    calls) and return the job's key: the page shows wait_for while it runs, then take_result. A job not yet shown
    is kept; once taken, the next view scores again (from the cache, failed calls asked again)."""
    store = get_store()
    return _start_once(f"candidate:{run_id}:{cand_id}:{split}", "candidate", lambda job: results.candidate_result(
        store, run_id, cand_id, split, target, dataset, metric,
        on_progress=lambda done, total: job.progress.update(done=done, total=total)), CACHED_WAIT_S)
