"""A prompt: its system and user templates, its demonstrations, its placeholders and its text form.

`PromptTemplate.from_text` reads the one text an analyst or a proposer writes; `template_text` writes it back
(the two are inverses for prompts without demos). `PLACEHOLDER` is the one pattern for `{name}` fields.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from promptlab.errors import PromptlabError
from promptlab.similarity import BACKENDS as SIMILARITY_BACKENDS, nearest

PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][\w \-]*)\}(?!\})")
SPECIAL_FIELDS = {"input": "the example's input text", "labels": "the label set, comma-separated"}


class PromptError(PromptlabError):
    pass


DEMO_FORMATS = ("chat", "inline")


@dataclass(frozen=True)
class Demo:
    """One demonstration: a train example's input (its text and input fields) and its gold label."""

    text: str
    label: str
    fields: tuple[tuple[str, str], ...] = ()
    idx: int | None = None  # the example's row in its dataset, when it came from one

    def to_record(self) -> dict:
        return {"text": self.text, "label": self.label, "fields": [list(f) for f in self.fields], "idx": self.idx}

    @classmethod
    def from_record(cls, rec) -> "Demo":
        if isinstance(rec, Demo):
            return rec
        return cls(str(rec["text"]), str(rec["label"]), tuple((str(k), str(v)) for k, v in rec.get("fields") or ()),
                   rec.get("idx"))


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt: a system part and a user part, with {input}, {labels} and any {column} placeholders,
    plus optional demonstrations.

    Use {{ and }} for literal braces around a name (e.g. '{{input}}' renders as '{input}').
    Demonstrations render either as chat turns (the user part filled with the demo's input, then an
    assistant turn with its label) before the real input, or inline, appended to the instruction as
    'Input: … / Answer: …' pairs.
    """

    system: str = ""
    user: str = "{input}"
    demos: tuple[Demo, ...] = ()
    demo_format: str = "chat"
    similar_k: int = 0  # > 0: `demos` is a pool, and each input gets its similar_k nearest demos from it
    similar_by: str = "tfidf"  # how "nearest" is measured (promptlab.similarity.BACKENDS)

    def __post_init__(self):
        if self.demo_format not in DEMO_FORMATS:
            raise PromptError(f"unknown demo format '{self.demo_format}': use one of {', '.join(DEMO_FORMATS)}")
        if self.similar_by not in SIMILARITY_BACKENDS:
            raise PromptError(f"unknown similarity '{self.similar_by}': use {' or '.join(SIMILARITY_BACKENDS)}")
        object.__setattr__(self, "demos", tuple(Demo.from_record(d) for d in self.demos))

    @property
    def id(self) -> str:
        parts = [self.system, self.user]
        if self.demos:  # prompts without demos keep the ids they always had
            parts += [self.demo_format, [d.to_record() for d in self.demos]]
            if self.similar_k:
                parts.append(self.similar_k)
                if self.similar_by != "tfidf":  # tfidf prompts keep the ids they always had
                    parts.append(self.similar_by)
        blob = json.dumps(parts, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def to_record(self) -> dict:
        rec = {"system": self.system, "user": self.user}
        if self.demos:
            rec.update(demos=[d.to_record() for d in self.demos], demo_format=self.demo_format)
            if self.similar_k:
                rec["similar_k"] = self.similar_k
                if self.similar_by != "tfidf":
                    rec["similar_by"] = self.similar_by
        return rec

    @classmethod
    def from_record(cls, rec: dict) -> "PromptTemplate":
        return cls(system=str(rec.get("system", "")), user=str(rec.get("user", "{input}")),
                   demos=tuple(Demo.from_record(d) for d in rec.get("demos") or ()),
                   demo_format=str(rec.get("demo_format") or "chat"), similar_k=int(rec.get("similar_k") or 0),
                   similar_by=str(rec.get("similar_by") or "tfidf"))

    def with_demos(self, demos, demo_format: str | None = None, similar_k: int = 0,
                   similar_by: str = "tfidf") -> "PromptTemplate":
        if not demos:
            return PromptTemplate(self.system, self.user)
        return PromptTemplate(self.system, self.user, tuple(demos), demo_format or self.demo_format, similar_k,
                              similar_by if similar_k else "tfidf")

    def demos_for(self, text: str) -> tuple[Demo, ...]:
        """The demos shown with one input: all of them, or its similar_k nearest in the pool. Never the input itself:
        a pool demo with the input's own text is left out, so an example of the pool (a train row the search probes
        for failures) is not shown its own answer, and a duplicate of a val or test input cannot answer it."""
        if not self.similar_k:
            return self.demos
        if sum(d.text != text for d in self.demos) <= self.similar_k:
            return tuple(d for d in self.demos if d.text != text)
        return tuple(self.demos[i] for i in nearest(tuple(d.text for d in self.demos), text, self.similar_k,
                                                    self.similar_by, skip_same=True))

    @classmethod
    def from_text(cls, text: str, system: str | None = None) -> "PromptTemplate":
        """A single prompt text: with an {input} (or column) placeholder it is the user message; without
        one it is an instruction, sent as the system message, and the input is the user message."""
        text = text.strip("\n")
        if system is not None:
            return cls(system=system, user=text or "{input}")
        if not text.strip():
            raise PromptError("the prompt is empty: write an instruction, e.g. 'Classify the ticket. Answer with one of: {labels}.'")
        if {m.group(1) for m in PLACEHOLDER.finditer(text)} - {"labels"}:
            return cls(system="", user=text)
        return cls(system=text, user="{input}")

    @classmethod
    def from_file_text(cls, text: str) -> "PromptTemplate":
        """A prompt file: JSON {"system": ..., "user": ...}, or plain text as in from_text."""
        stripped = text.strip()
        if stripped.startswith("{") and stripped.endswith("}"):
            try:
                doc = json.loads(stripped)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and ({"system", "user"} & set(doc)):
                return cls(system=str(doc.get("system", "")), user=str(doc.get("user", "{input}")))
        return cls.from_text(text)

    def placeholders(self) -> set[str]:
        return {m.group(1) for part in (self.system, self.user) for m in PLACEHOLDER.finditer(part)}

    def check(self, input_cols: tuple[str, ...]) -> None:
        """Raise a PromptError naming any placeholder the dataset cannot fill."""
        known = set(SPECIAL_FIELDS) | set(input_cols)
        unknown = sorted(self.placeholders() - known)
        if unknown:
            raise PromptError(
                f"the prompt uses {', '.join('{' + u + '}' for u in unknown)}, which the dataset cannot fill. "
                f"Available placeholders: {', '.join('{' + k + '}' for k in sorted(known))} "
                "(write {{name}} for literal braces)."
            )
        if not (self.placeholders() & ({"input"} | set(input_cols))):
            raise PromptError("the prompt never shows the example: put {input} (or a column placeholder) in it.")

    def render(self, fields: dict[str, str], text: str, labels: tuple[str, ...]) -> list[dict]:
        def fill(template: str, fields: dict, text: str) -> str:
            values = {**fields, "input": text, "labels": ", ".join(labels)}
            out = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
            return out.replace("{{", "{").replace("}}", "}")

        system = fill(self.system, fields, text) if self.system.strip() else ""
        turns: list[dict] = []
        demos = self.demos_for(text)
        if demos and self.demo_format == "inline":
            shown = "\n\n".join(
                f"Input: {fill(self.user, dict(d.fields), d.text)}\nAnswer: {d.label}" for d in demos
            )
            system = f"{system}\n\nExamples:\n\n{shown}".strip()
        elif demos:
            for d in demos:
                turns.append({"role": "user", "content": fill(self.user, dict(d.fields), d.text)})
                turns.append({"role": "assistant", "content": d.label})
        messages = [{"role": "system", "content": system}] if system else []
        return messages + turns + [{"role": "user", "content": fill(self.user, fields, text)}]


def template_text(prompt: PromptTemplate) -> str:
    """The one text a proposer sees and writes for a prompt (inverse of PromptTemplate.from_text)."""
    if prompt.user.strip() == "{input}":
        return prompt.system
    if not prompt.system.strip():
        return prompt.user
    return f"{prompt.system}\n\n{prompt.user}"


def normalize_prompt(text: str) -> str:
    """A prompt's text as compared for sameness: case, spacing and surrounding quotes or periods ignored."""
    return " ".join(text.casefold().split()).strip(" .\"'")
