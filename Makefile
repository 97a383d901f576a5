# Two commands on a fresh machine: `make run` (the dashboard) and `make test` (the test suite).
# Both build .venv from the pinned requirements first, once (again only when requirements change).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test browser

# llama.cpp is compiled for this machine's CPU (-march=native) but without AMX: on Intel CPUs with AMX, in a
# VM that does not grant the tile state (this workplace's machines), its AMX kernels crash with SIGSEGV at the
# first decode. --no-cache-dir: pip would otherwise reuse a wheel it cached from a build with other flags.
LLAMA_FLAGS := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16

$(STAMP): requirements.txt requirements-zoo.txt
	$(PYTHON) -m venv $(VENV)
	CMAKE_ARGS="-DCMAKE_C_FLAGS='$(LLAMA_FLAGS)' -DCMAKE_CXX_FLAGS='$(LLAMA_FLAGS)'" \
	  $(PY) -m pip install --no-cache-dir "$$(grep -E '^llama-cpp-python' requirements.txt)"
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

test: $(STAMP) browser
	$(PY) -m pytest
