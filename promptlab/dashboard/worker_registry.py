"""The worker registry: long work in daemon worker threads that never call st.*, and the polling pages do. (A
"job" is a scoring job, promptlab.jobs; a worker is the thread here that runs one, or a run, a study or a group.)"""
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
class Worker:
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


_WORKERS: dict[str, Worker] = {}  # module level, not cache_resource: "Clear cache" must not forget live runs


def workers() -> dict[str, Worker]:
    return _WORKERS


def start_worker(key: str, kind: str, work: Callable[[Worker], Any]) -> Worker:
    """Run work(worker) in a daemon thread; never two workers under one key at once."""
    current = _WORKERS.get(key)
    if current is not None and current.running:
        return current
    worker = Worker(key, kind)

    def target() -> None:
        try:
            worker.result = work(worker)
        except PromptlabError as exc:
            worker.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown as one line; the traceback goes to the server log
            traceback.print_exc()
            worker.error = f"{type(exc).__name__}: {exc}"
        finally:
            worker.finished = time.time()

    worker.thread = threading.Thread(target=target, name=f"promptlab-{kind}-{key}", daemon=True)
    _WORKERS[key] = worker
    worker.thread.start()
    return worker


def running(prefix: str = "", kind: str | None = None) -> list[str]:
    """Keys of the workers running now, those starting with `prefix` (and of `kind`, if given)."""
    return [k for k, w in _WORKERS.items() if k.startswith(prefix) and (kind is None or w.kind == kind) and w.running]


def _show_progress(worker: Worker, what: str) -> None:
    st.progress(worker.progress.share, text=f"{what}: {worker.progress.line()}" if what else worker.progress.line())


def _outcome(worker: Worker) -> Any:
    """A finished worker's result, or None with its error shown."""
    if worker.error:
        st.error(worker.error)
        return None
    return worker.result


def worker_result(key: str, heading: str | None = None) -> Any:
    """For a fragment that polls a worker: its result once it finished well; None when there is no such worker,
    while it runs (with a progress bar under `heading`, if given), or when it failed (the error shown)."""
    worker = _WORKERS.get(key)
    if worker is None:
        return None
    if worker.running:
        if heading is not None:
            _show_progress(worker, heading)
        return None
    return _outcome(worker)


def take_result(key: str) -> Any:
    """A finished worker's result, once: the worker is let go, so the next view starts afresh (and asks failed calls
    again, the rest from the cache); a failure is shown instead. None while it runs or when there is none."""
    worker = _WORKERS.get(key)
    if worker is None or worker.running:
        return None
    del _WORKERS[key]
    return _outcome(worker)


@st.fragment(run_every=1.5)
def wait_for(keys: tuple[str, ...], message: str, bar: bool = False) -> None:
    """Shown while workers run (the message, or with `bar` a progress bar headed by it); when they end, the whole
    page reruns to show their result (so a finished result is drawn once, not redrawn by a polling fragment)."""
    busy = [w for k in keys if (w := _WORKERS.get(k)) is not None and w.running]
    if not busy:
        st.rerun()
    if bar:
        _show_progress(busy[0], message)
    else:
        st.info(message)


def live_runs() -> set[str]:
    """Run ids this server is executing now: run workers, and the current run of each study worker."""
    live = set()
    for key, worker in _WORKERS.items():
        if worker.running:
            live.add((worker.progress.run_id or key) if worker.kind == "study" else key)
    return live


def run_is_live(run_id: str) -> bool:
    return run_id in live_runs()


def stop_run(run_id: str) -> None:
    worker = _WORKERS.get(run_id)
    if worker is not None:
        worker.stop.set()
