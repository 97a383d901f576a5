# Two commands on a fresh machine: `make run` (the dashboard) and `make test` (the test suite).
# Both build .venv from the pinned requirements first, once (again only when requirements change).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test browser

$(STAMP): requirements.txt requirements-zoo.txt
	$(PYTHON) -m venv $(VENV)
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
