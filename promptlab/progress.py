"""How far a long job is: one type every job reports and every front end draws (the CLI on stderr, the dashboard's
progress bars). A leaf, so evaluate, studies and groups can report through it without importing a front end."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Progress:
    """`done` of `total` units (`unit`: "new calls" while prompts are scored, "runs" while a study or a group runs),
    and a `note` saying what the job is doing now. One worker thread writes it; pages and terminals read it.
    `on_change(progress)` is called after each change (the CLI redraws its line there). `run_id`: the run a study
    or a group is executing now, so the dashboard counts it as live."""

    done: int = 0
    total: int = 0
    note: str = ""
    unit: str = "new calls"
    run_id: str | None = None
    on_change: Callable[["Progress"], None] | None = None

    @property
    def share(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def line(self) -> str:
        """The progress in words: '<note>: 3 of 12 new calls'. New calls only: cached ones are free and instant."""
        count = f"{self.done} of {self.total} {self.unit}" if self.total else ""
        return ": ".join(p for p in (self.note, count) if p) or "starting…"

    def update(self, *, done: int | None = None, total: int | None = None, note: str | None = None,
               run_id: str | None = None) -> None:
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if note is not None:
            self.note = note
        if run_id is not None:
            self.run_id = run_id
        self._changed()

    def expect(self, n: int) -> None:
        """n more units to do (a prompt's uncached calls, known once the cache has answered)."""
        self.total += n
        self._changed()

    def tick(self, n: int = 1) -> None:
        self.done += n
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)
