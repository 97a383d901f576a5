"""The process's lease on the DuckDB file: opened on demand, shared by its threads, handed over to other processes.

Access model: DuckDB lets one *process* hold the file, and then no other process may open it, not even
read-only. So a process holds the file only while it works (and through the short gaps between its
operations), each operation on a cursor of its own in one transaction; an operation that finds the file
locked by another process says that it waits and retries with jittered backoff, and the holder hands the
file over. A CLI run and the dashboard therefore interleave instead of one locking the other out. Within a
process DuckDB shares one database instance across connections, and every thread uses its own cursor.
"""
from __future__ import annotations

import atexit
import random
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from promptlab.errors import StoreError

LOCK_WAIT_S = 60.0


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text or "database is locked" in text


# How long an idle process keeps the file open, how long a busy one may hold it while another process
# waits, and how long it then stays away so the waiter gets in. Reopening the file (and the checkpoint
# on close) costs ~25 ms, a committed write on an open file ~2 ms. An evaluation commits one call every
# few hundred ms, so the file stays open through such gaps (IDLE_RELEASE_S), and is handed over within
# WATCH_S as soon as another process signals that it waits.
IDLE_RELEASE_S = 2.0
WATCH_S = 0.02
MAX_HOLD_S = 1.0
YIELD_GAP_S = 0.05


class Lease:
    """The process's open DuckDB instance for one file, shared by its threads (one cursor each).

    Released when idle, and handed over when another process signals that it waits (by touching
    `<db>.wait`), so a CLI run and the dashboard take turns instead of one locking the other out.
    """

    def __init__(self, path: Path):
        self.path = path
        self.wait_flag = path.with_name(path.name + ".wait")
        self.cond = threading.Condition()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.users = 0
        self.opened_at = 0.0
        self.last_used = 0.0
        self.draining = False
        self._closer: threading.Thread | None = None

    def _someone_waits(self) -> bool:
        try:
            return time.time() - self.wait_flag.stat().st_mtime < 2 * MAX_HOLD_S
        except OSError:
            return False

    def _open(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + LOCK_WAIT_S
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.Error as exc:
                if not _is_lock_error(exc):
                    raise StoreError(f"cannot open the database {self.path}: {exc}") from None
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"the database {self.path} stayed locked by another process for {LOCK_WAIT_S:.0f} s. "
                        "Another program holds it open; close it, or use another --db."
                    ) from None
                try:
                    self.wait_flag.touch()
                except OSError:
                    pass
                time.sleep(random.uniform(0.003, 0.015))

    def _close(self) -> None:
        if self.con is not None:
            try:
                self.con.close()
            finally:
                self.con = None

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.cond:
            if self.con is not None and time.monotonic() - self.opened_at > MAX_HOLD_S and self._someone_waits():
                self.draining = True
            while self.draining and self.users > 0:
                self.cond.wait()
            if self.draining:
                self._close()
                time.sleep(YIELD_GAP_S)
                self.draining = False
            if self.con is None:
                self.con = self._open()
                self.opened_at = time.monotonic()
            cur = self.con.cursor()
            self.users += 1  # only once the cursor exists: a failure here must not pin the file open
            self._start_closer()
        try:
            yield cur
        finally:
            cur.close()
            with self.cond:
                self.users -= 1
                self.last_used = time.monotonic()
                self.cond.notify_all()

    def _start_closer(self) -> None:
        if self._closer is None or not self._closer.is_alive():
            self._closer = threading.Thread(target=self._close_when_idle, name="promptlab-store-idle", daemon=True)
            self._closer.start()

    def _close_when_idle(self) -> None:
        while True:
            time.sleep(WATCH_S)
            with self.cond:
                if self.con is None:
                    return
                idle = time.monotonic() - self.last_used
                if self.users == 0 and (idle > IDLE_RELEASE_S or (idle > WATCH_S and self._someone_waits())):
                    self._close()
                    return

    def close(self) -> None:
        with self.cond:
            while self.users > 0:
                self.cond.wait()
            self._close()


_leases: dict[Path, Lease] = {}
_leases_lock = threading.Lock()


@atexit.register
def _close_all_leases() -> None:
    for lease in list(_leases.values()):
        with lease.cond:
            if lease.users > 0:  # a daemon thread (a run's worker) is inside a call: the OS frees the file at exit
                continue
            try:
                lease._close()
            except duckdb.Error:
                pass


def file_lease(path: Path) -> Lease:
    """The lease on the file at `path` this process shares among its threads (made on first use)."""
    key = path.resolve()
    with _leases_lock:
        if key not in _leases:
            _leases[key] = Lease(key)
        return _leases[key]
