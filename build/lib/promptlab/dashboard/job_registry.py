"""The job registry: long work in daemon worker threads that never call st.*, and the polling pages do."""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st

from promptlab.errors import PromptlabError
from promptlab.progress import Progress


@dataclass
class Job:
    key: str
    kind: str
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: Any = None
    error: str | None = None
    progress: Progress = field(default_factory=Progress)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


_JOBS: dict[str, Job] = {}  # module level, not cache_resource: "Clear cache" must not forget live runs


def jobs() -> dict[str, Job]:
    return _JOBS


def start_job(key: str, kind: str, work: Callable[[Job], Any]) -> Job:
    """Run work(job) in a daemon thread; never two jobs under one key at once."""
    current = _JOBS.get(key)
    if current is not None and current.running:
        return current
    job = Job(key, kind)

    def target() -> None:
        try:
            job.result = work(job)
        except PromptlabError as exc:
            job.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown as one line; the traceback goes to the server log
            traceback.print_exc()
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            job.finished = time.time()

    job.thread = threading.Thread(target=target, name=f"promptlab-{kind}-{key}", daemon=True)
    _JOBS[key] = job
    job.thread.start()
    return job


def running(prefix: str = "", kind: str | None = None) -> list[str]:
    """Keys of the jobs running now, those starting with `prefix` (and of `kind`, if given)."""
    return [k for k, j in _JOBS.items() if k.startswith(prefix) and (kind is None or j.kind == kind) and j.running]


def _show_progress(job: Job, what: str) -> None:
    st.progress(job.progress.share, text=f"{what}: {job.progress.line()}" if what else job.progress.line())


def _outcome(job: Job) -> Any:
    """A finished job's result, or None with its error shown."""
    if job.error:
        st.error(job.error)
        return None
    return job.result


def job_result(key: str, heading: str | None = None) -> Any:
    """For a fragment that polls a worker job: its result once it finished well; None when there is no such job,
    while it runs (with a progress bar under `heading`, if given), or when it failed (the error shown)."""
    job = _JOBS.get(key)
    if job is None:
        return None
    if job.running:
        if heading is not None:
            _show_progress(job, heading)
        return None
    return _outcome(job)


def take_result(key: str) -> Any:
    """A finished job's result, once: the job is let go, so the next view starts afresh (and asks failed calls
    again, the rest from the cache); a failure is shown instead. None while it runs or when there is none."""
    job = _JOBS.get(key)
    if job is None or job.running:
        return None
    del _JOBS[key]
    return _outcome(job)


@st.fragment(run_every=1.5)
def wait_for(keys: tuple[str, ...], message: str, bar: bool = False) -> None:
    """Shown while worker jobs run (the message, or with `bar` a progress bar headed by it); when they end, the
    whole page reruns to show their result (so a finished result is drawn once, not redrawn by a polling fragment)."""
    busy = [j for k in keys if (j := _JOBS.get(k)) is not None and j.running]
    if not busy:
        st.rerun()
    if bar:
        _show_progress(busy[0], message)
    else:
        st.info(message)


def live_runs() -> set[str]:
    """Run ids this server is executing now: run jobs, and the current run of each study job."""
    live = set()
    for key, job in _JOBS.items():
        if job.running:
            live.add((job.progress.run_id or key) if job.kind == "study" else key)
    return live


def run_is_live(run_id: str) -> bool:
    return run_id in live_runs()


def stop_run(run_id: str) -> None:
    job = _JOBS.get(run_id)
    if job is not None:
        job.stop.set()
