# The README's two commands: `make run` and `make test`. Each works on a fresh machine with only
# Python 3.11+: it creates .venv, installs the project and its pinned Temporal binaries, and runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-full lint format bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/notifyflow dev

test: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The long fault-injection loops (reduced in `make test`).
test-full: $(STAMP)
	NOTIFYFLOW_FAULT_TRIALS=10 $(BIN)/python -m pytest -m "slow or not slow"

# The benchmark (docs/performance.md): Temporal's own floor (B0, B1) and the notification
# lifecycle side by side in one run; --quick in under three minutes.
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench --quick

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

clean:
	rm -rf $(VENV) .notifyflow .pytest_cache .mypy_cache .ruff_cache
