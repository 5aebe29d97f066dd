# Two commands do all the set-up on a fresh machine (Python 3.10+ with venv):
#   make demo   installs bertfit and trains on the embedded demo data with the embedded model
#   make test   installs the test tools and runs the test suite
VENV ?= .venv
PYTHON ?= python3
# The CPU build that lies on this machine's disk; an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/bertfit train --out bertfit-model --overwrite

test: install-test
	$(BIN)/python -m pytest -q

lint: install-test
	$(BIN)/ruff check src tests bench scripts

bench: install
	$(BIN)/python bench/accuracy.py

clean:
	rm -rf $(VENV) bertfit-model .pytest_cache
