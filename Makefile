# The README's two commands: `make run` and `make test`. Each works on a fresh machine with only
# Python 3.11+: it creates .venv, installs the locked dependencies (requirements/dev.lock: the
# runtime, the embedded Temporal binaries and the test tools) and the project, and runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-full lint format bench bench-quick clean lock

LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock"

# Plain pip from PyPI: the lock pins every package with its hashes; the project itself is
# installed after it with --no-deps, so nothing outside the lock is resolved.
$(STAMP): pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

# Re-resolve both lock files from pyproject.toml (newest versions within its ranges); the dev
# lock is constrained by the runtime lock, so the image and the tests run the same versions.
# It needs only uv (the version dev.lock pins), not an installed project: after an edit of
# pyproject.toml the old lock no longer installs it.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$$(grep -E '^uv==' requirements/dev.lock | cut -d' ' -f1)"
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) --upgrade -o requirements/runtime.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) --upgrade \
		-c requirements/runtime.lock -o requirements/dev.lock

run: $(STAMP)
	$(BIN)/notifyflow dev

test: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The long fault-injection loops (reduced in `make test`).
test-full: $(STAMP)
	NOTIFYFLOW_FAULT_TRIALS=10 NOTIFYFLOW_SCHEMATHESIS_EXAMPLES=60 \
		$(BIN)/python -m pytest -m "slow or not slow"

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
