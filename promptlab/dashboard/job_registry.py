"""The job registry: long work in daemon worker threads that never call st.*, and the polling pages do."""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st

from promptlab.errors import PromptlabError


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
    progress: dict = field(default_factory=dict)

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


def job_result(key: str, progress_of: Callable[[dict], tuple[float, str]]) -> Any:
    """For a fragment that polls a worker job: its result once it finished well; None when there is no such job,
    while it runs (a progress bar from progress_of(job.progress) -> (share done, text)), or when it failed (the
    error shown)."""
    job = _JOBS.get(key)
    if job is None:
        return None
    if job.running:
        share, text = progress_of(job.progress)
        st.progress(min(1.0, share), text=text)
        return None
    if job.error:
        st.error(job.error)
        return None
    return job.result


def take_result(key: str) -> Any:
    """A finished job's result, once: the job is let go, so the next view starts afresh (and asks failed calls
    again, the rest from the cache); a failure is shown instead. None while it runs or when there is none."""
    job = _JOBS.get(key)
    if job is None or job.running:
        return None
    del _JOBS[key]
    if job.error:
        st.error(job.error)
        return None
    return job.result


@st.fragment(run_every=1.5)
def progress_until_done(key: str, progress_of: Callable[[dict], tuple[float, str]]) -> None:
    """A progress bar while a worker job runs; when it ends, the whole page reruns to show its result (so a
    finished result is drawn once, not redrawn by a polling fragment)."""
    job = _JOBS.get(key)
    if job is not None and job.running:
        share, text = progress_of(job.progress)
        st.progress(min(1.0, share), text=text)
        return
    st.rerun()


@st.fragment(run_every=1.5)
def wait_for(keys: tuple[str, ...], message: str) -> None:
    """Shown while worker jobs run; when they end, the whole page reruns to show their result."""
    if any((j := _JOBS.get(k)) is not None and j.running for k in keys):
        st.info(message)
        return
    st.rerun()


def live_runs() -> set[str]:
    """Run ids this server is executing now: run jobs, and the current run of each study job."""
    live = set()
    for key, job in _JOBS.items():
        if job.running:
            live.add(job.progress.get("run_id", key) if job.kind == "study" else key)
    return live


def run_is_live(run_id: str) -> bool:
    return run_id in live_runs()


def stop_run(run_id: str) -> None:
    job = _JOBS.get(run_id)
    if job is not None:
        job.stop.set()
