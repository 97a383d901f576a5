"""What every benchmark script shares and that needs nothing of promptlab: the machine line and RESULTS.md sections."""
from __future__ import annotations

import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu or platform.processor()}, Python {platform.python_version()}"


def zoo_args(ap, data_dir: Path) -> None:
    """The arguments every zoo benchmark takes: where the task files are, the target, the proposers and the critic."""
    ap.add_argument("--data-dir", default=str(data_dir))
    ap.add_argument("--target", default="local/qwen2.5-coder-0.5b")
    ap.add_argument("--proposers", default="local/qwen2.5-coder-1.5b,local/qwen2.5-coder-0.5b,local/smollm2-135m")
    ap.add_argument("--critic", default="local/qwen2.5-coder-1.5b")


def write_section(name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")
