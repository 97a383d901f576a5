# Two commands on a fresh machine: `make run` (the dashboard) and `make test` (the test suite).
# Both build .venv from the pinned requirements first, once (again only when requirements change).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test browser promptfoo bench bench-dspy bench-report

# llama.cpp is compiled for the x86-64 features this CPU has, named one by one, not with -march=native: on Intel
# CPUs with AMX, in a VM that does not grant the tile state (this workplace's machines), a native build's AMX
# kernels crash with SIGSEGV at the first decode (ldtilecfg), and a native build with AMX masked off measured
# 30x slower here (4 s a call against 0.15 s). --no-cache-dir: pip would otherwise reuse a wheel it cached from
# a build with other flags.
CPU_FLAGS := $(shell cat /proc/cpuinfo 2>/dev/null | grep -m1 '^flags')
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  $(if $(findstring avx512f,$(CPU_FLAGS)),-DGGML_AVX512=ON) \
  $(if $(findstring avx512_vnni,$(CPU_FLAGS)),-DGGML_AVX512_VNNI=ON) \
  $(if $(findstring avx512_bf16,$(CPU_FLAGS)),-DGGML_AVX512_BF16=ON)

$(STAMP): requirements.txt requirements-zoo.txt
	$(PYTHON) -m venv $(VENV)
	CMAKE_ARGS="$(strip $(LLAMA_CMAKE))" $(PY) -m pip install --no-cache-dir "$$(grep -E '^llama-cpp-python' requirements.txt)"
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -r requirements-zoo.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/streamlit run app.py

# The end-to-end test needs a real browser: Debian's chromium (Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "the browser test needs chromium: sudo apt-get install chromium"; fi; }

# promptfoo itself, pinned, for the test that runs a promptfoo export with it (tests/test_export_tools.py; the version
# is promptlab.export.PROMPTFOO_VERSION: newer releases need Node 22). --ignore-scripts: its install scripts would
# download a browser and call home; better-sqlite3, where promptfoo keeps its results, is then compiled here.
PROMPTFOO_DIR := $(VENV)/promptfoo
PROMPTFOO_STAMP := $(PROMPTFOO_DIR)/.installed

$(PROMPTFOO_STAMP):
	@command -v npm >/dev/null 2>&1 || { echo "the promptfoo export test needs Node.js 20 and npm (apt-get install nodejs npm)"; exit 1; }
	mkdir -p $(PROMPTFOO_DIR)
	cd $(PROMPTFOO_DIR) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install promptfoo@0.118.0 --ignore-scripts --no-audit --no-fund
	cd $(PROMPTFOO_DIR) && npm_config_build_from_source=true npm rebuild better-sqlite3
	touch $(PROMPTFOO_STAMP)

promptfoo: $(PROMPTFOO_STAMP)

test: $(STAMP) browser promptfoo
	$(PY) -m pytest

# The benchmark table of benchmarks/RESULTS.md ("auto"): DSPy's optimizers first (their own venv, against two
# llama_cpp servers of the zoo), then promptlab's strategies, which read DSPy's figures into the same table.
# Long (hours on 2 cores); both steps resume where they stopped.
DSPY_VENV := benchmarks/.venv-dspy
DATA_DIR ?= ../shared/datasets

bench-dspy: $(STAMP)
	test -x $(DSPY_VENV)/bin/python || { $(PYTHON) -m venv $(DSPY_VENV) && $(DSPY_VENV)/bin/pip install -r benchmarks/requirements-dspy.txt; }
	$(PY) benchmarks/export_splits.py --data-dir $(DATA_DIR) --out benchmarks/splits
	benchmarks/dspy_serve.sh start
	$(DSPY_VENV)/bin/python benchmarks/dspy_bench.py --splits benchmarks/splits --optimizers mipro,gepa \
	  --target-base http://127.0.0.1:8771/v1 --proposer-base http://127.0.0.1:8772/v1 \
	  --out benchmarks/dspy_results.json; status=$$?; benchmarks/dspy_serve.sh stop; exit $$status

# The second target on four tasks: two where the 0.5B target gains, two where it answers one label whatever the prompt.
TASKS_1_5B := implicatures,multiemo_hotels_en,epistemic_reasoning,social_support
BENCH_DIR = $${PROMPTLAB_HOME:-$$HOME/.cache/promptlab}/bench
BENCH_STORES = $(BENCH_DIR)/auto_bench-qwen2.5-coder-0.5b.duckdb,$(BENCH_DIR)/auto_bench-qwen2.5-coder-1.5b.duckdb

bench: $(STAMP) bench-dspy
	$(PY) benchmarks/auto_bench.py --data-dir $(DATA_DIR) --language-check
	$(PY) benchmarks/auto_bench.py --data-dir $(DATA_DIR) --target local/qwen2.5-coder-1.5b --tasks $(TASKS_1_5B) \
	  --strategies auto,auto-hand,fewshot,arena
	$(PY) benchmarks/confirm_bench.py --real $(BENCH_STORES)

# The same tables from the runs finished so far (starts none; lists what is missing).
bench-report: $(STAMP)
	$(PY) benchmarks/auto_bench.py --data-dir $(DATA_DIR) --language-check --report
	$(PY) benchmarks/auto_bench.py --data-dir $(DATA_DIR) --target local/qwen2.5-coder-1.5b --tasks $(TASKS_1_5B) \
	  --strategies auto,auto-hand,fewshot,arena --report
