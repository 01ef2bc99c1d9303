# One-command set-up on a fresh machine: every target creates the venv if it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck demo bench faults clean serve

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# ruff, then the architecture: the layer contracts in pyproject.toml and no private name imported across modules.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples scripts
	$(BIN)/ruff format --check src tests bench examples scripts
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_private_imports.py src/align_mcp

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q -m "not slow"

faults: $(STAMP)
	$(BIN)/pytest -q -m slow

demo: $(STAMP)
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache demo-data
