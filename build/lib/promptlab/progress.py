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
    # A job of several parts (prompts side by side, matrix cells) learns each part's calls only when the part
    # starts: part `part` of `parts` began at (done, total) = `began`, so the share never runs backwards.
    part: int = 0
    parts: int = 0
    began: tuple[int, int] = (0, 0)

    @property
    def share(self) -> float:
        """How much is done, 0 to 1: done / total, or within a job of parts, the parts done plus this one's share."""
        if not self.parts:
            return min(1.0, self.done / self.total) if self.total else 0.0
        done, total = self.done - self.began[0], self.total - self.began[1]
        return min(1.0, (self.part - 1 + (done / total if total else 0.0)) / self.parts)

    def begin(self, part: int, parts: int, note: str) -> None:
        """Part `part` (from 1) of `parts` starts; its calls are counted from here."""
        self.part, self.parts, self.began, self.note = part, parts, (self.done, self.total), note
        self._changed()

    def line(self) -> str:
        """The progress in words: '<note>: 3 of 12 new calls' (or runs: see `unit`)."""
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
