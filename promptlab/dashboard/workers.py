"""Every long piece of work a page or panel starts, each in a worker thread: optimization runs, studies and groups,
their analyses, and the scoring jobs (promptlab.jobs, grading, review); no page starts a thread of its own. Each worker
has one `Progress` (worker.progress): the scoring jobs count their new calls in it (pages draw it as a bar), a study or
group names the run it is executing (so that run counts as live); a run's own progress is read from the store."""
from __future__ import annotations

from promptlab import grading as G, group, jobs as J, review as R, runs, study
from promptlab.dashboard.worker_registry import Worker, live_runs, start_worker, workers
from promptlab.dashboard.readers import get_store
from promptlab.data import Dataset
from promptlab.errors import PromptlabError
from promptlab.models import ModelSpec
from promptlab.progress import Progress
from promptlab.prompt import PromptTemplate

# Scoring from the cache alone takes tens of milliseconds: waiting this long lets the first render show it,
# while a model call goes on in the worker and the page's fragment polls for it.
CACHED_WAIT_S = 0.5
ANALYSIS_WAIT_S = 2.0  # a study's analysis from the cache: its bootstraps take a second or so


def start_run(run_id: str) -> Worker:
    """Execute (or resume) an optimization run in the background (never one a study is executing)."""
    store = get_store()
    if run_id in live_runs() and run_id not in workers():
        raise PromptlabError(f"run {run_id} is being executed by a study right now")
    return start_worker(run_id, "run", lambda w: runs.execute(store, run_id, stop=w.stop))


def start_study(study_id: str) -> Worker:
    """Execute (or resume) a study's runs in the background, one after another."""
    store = get_store()

    return start_worker(study_id, "study", lambda w: study.execute_study(store, study_id, w.progress, stop=w.stop))


def start_group(group_id: str) -> Worker:
    """Execute (or resume) a group's searches in the background, one target after another, then cross-score each
    result on every model of the group (so Results reads the prompts x models matrix from the cache)."""
    store = get_store()

    def work(worker: Worker):
        frame = group.execute_group(store, group_id, worker.progress, stop=worker.stop)
        if not worker.stop.is_set() and (frame["status"] == "finished").all():
            worker.progress = Progress()  # the searches are done: now the matrix's calls
            group.matrix(store, group_id, worker.progress)
        return frame

    return start_worker(group_id, "study", work)  # a study's kind: its current run counts as live


def group_matrix(group_id: str) -> str:
    """A group's prompts x models matrix in a worker (from the cache once the group's worker has scored it)."""
    store = get_store()
    return _start_once(f"group-matrix:{group_id}", "analysis", lambda w: group.matrix(store, group_id, w.progress),
                       ANALYSIS_WAIT_S)


def _start_once(key: str, kind: str, work, wait_s: float) -> str:
    """Start work under `key` unless a worker there has run or is running well (a failed one starts again), then give
    it `wait_s` to finish, so what the cache answers at once shows in the first render; returns the key."""
    worker = workers().get(key)
    if worker is None or worker.error:
        start_worker(key, kind, work).thread.join(wait_s)
    return key


def analyze_study(study_id: str) -> str:
    """Analyse a study in a worker (its cells and head-to-head pairs; the test scores come from the cache, and a
    cache miss is a model call that must not block a page) and return the worker's key. One analysis per count of
    finished runs, kept while the server runs: it is redone when another run of the study finishes."""
    store = get_store()
    members = store.study_members(study_id)
    key = f"study-analysis:{study_id}:{int((members['status'] == 'finished').sum())}"
    return _start_once(key, "analysis", lambda w: (study.analyze(store, study_id),
                                                   study.head_to_head(store, study_id)), ANALYSIS_WAIT_S)


def score_candidate(run_id: str, cand_id: int, split: str, dataset: Dataset, target: ModelSpec, metric) -> str:
    """Score a run's candidate on a split in a worker (jobs.candidate_result) and return the worker's key: the
    page shows wait_for while it runs, then take_result. A result not yet shown is kept; once taken, the next view
    scores again (from the cache, failed calls asked again)."""
    store = get_store()
    return _start_once(f"candidate:{run_id}:{cand_id}:{split}", "candidate", lambda w: J.candidate_result(
        store, run_id, cand_id, split, target, dataset, metric, w.progress), CACHED_WAIT_S)


# --- the scoring jobs the pages start (promptlab.jobs, grading, review): each under the key its page polls ------

def score_prompts(key: str, spec: ModelSpec, templates: list, dataset: Dataset, split: str, metric_spec: str,
                  judge: dict | None) -> Worker:
    """Several prompts side by side with one model on the same split (the Prompts and proposers page)."""
    store = get_store()
    return start_worker(key, "manual", lambda w: J.score_prompts(store, spec, templates, dataset, split, metric_spec,
                                                                 w.progress, judge=judge))


def score_elsewhere(key: str, request: J.ElsewhereRequest) -> Worker:
    """A stored prompt on another dataset or model, kept as an eval run (Results: "score it elsewhere")."""
    store = get_store()
    return start_worker(key, "elsewhere", lambda w: J.score_elsewhere(store, request, w.progress))


def score_matrix(key: str, request: J.MatrixRequest) -> Worker:
    """The top prompts of several runs scored by several models (Results: prompts x models)."""
    store = get_store()
    return start_worker(key, "matrix", lambda w: J.score_matrix(store, request, w.progress))


def grade_outputs(key: str, dataset: Dataset, spec: ModelSpec, prompt: PromptTemplate, split: str, limit: int,
                  scale: str) -> Worker:
    """The outputs to grade by hand (the grading panel)."""
    store = get_store()
    return start_worker(key, "grade", lambda w: G.outputs(store, dataset, spec, prompt, split=split, limit=limit,
                                                          scale=scale, progress=w.progress))


def check_judge(key: str, dataset: Dataset, spec: ModelSpec, prompt: PromptTemplate, split: str, limit: int,
                scale: str, judge: ModelSpec, rubric: str) -> Worker:
    """The judge checked against the hand grades. The batch's own calls come from the cache, but a split or count
    changed since would call the model: so in a worker."""
    store = get_store()
    return start_worker(key, "calibrate", lambda w: G.calibrate(
        store, G.outputs(store, dataset, spec, prompt, split=split, limit=limit, scale=scale), judge, rubric, scale))


def rescore(run_id: str, cand_id: int) -> Worker:
    """A paused run's candidate scored on train and val together (the review panel)."""
    store = get_store()
    return start_worker(f"rescore:{run_id}:{cand_id}", "rescore", lambda w: R.rescore(store, run_id, cand_id))
