"""Serve a zoo model as an OpenAI-compatible server on 127.0.0.1 (llama.cpp's own `llama_cpp.server`).

For trying promptlab's server path offline, for tests, and for the replica benchmark, where two such
servers on different ports stand in for the replicas of a vLLM or Ollama deployment. The server handles
one request at a time, so its endpoint's concurrency should stay small (2 keeps it busy; see README).

    with llama_server("qwen2.5-coder-0.5b", n_threads=2) as base:
        spec = make_spec("openai/qwen2.5-coder-0.5b", api_base=base)
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from typing import Iterator

from promptlab.errors import PromptlabError
from promptlab.local import ensure_gguf, gguf_path, zoo_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(key: str, port: int, n_threads: int | None = None, n_ctx: int = 4096,
                   alias: str | None = None, assemble: bool = True) -> list[str]:
    """The llama_cpp.server command for a zoo model (`assemble`: build its GGUF now if needed; else only name
    where promptlab keeps it, for a command shown to the user)."""
    model = zoo_model(key)
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(ensure_gguf(key) if assemble else gguf_path(key)),
           "--model_alias", alias or key, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
           # the server defaults to keeping logits for every prompt token: memory and time for nothing here
           "--logits_all", "False", "--verbose", "False"]
    if model.chat_format:
        cmd += ["--chat_format", model.chat_format]
    if n_threads:
        cmd += ["--n_threads", str(n_threads), "--n_threads_batch", str(n_threads)]
    return cmd


@contextmanager
def llama_server(key: str, *, port: int | None = None, n_threads: int | None = None, n_ctx: int = 4096,
                 alias: str | None = None, cpus: str | None = None, start_timeout_s: float = 180.0) -> Iterator[str]:
    """Start a server for zoo model `key`, wait until it answers, yield its base URL (…/v1), stop it.

    cpus: pin the server to these cores (taskset list such as "0" or "0-1"), so replicas on one machine
    do not share cores.
    """
    port = port or free_port()
    cmd = server_command(key, port, n_threads, n_ctx, alias)
    if cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + start_timeout_s
    try:
        while True:
            try:
                # /openapi.json answers without taking the model lock that /v1/models and completions share
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise PromptlabError(f"llama_cpp.server for {key} did not start on port {port}: {err}")
            time.sleep(0.3)
        yield base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
