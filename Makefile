# Stratum developer entry points. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed first and pinned: any unpinned torch requirement pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0
# Byte-compiling torch's thousands of modules at install time is ~20 s of the first `make run` on
# two cores; Python compiles what is actually imported on first use instead.
PIP    := $(BIN)/pip install --quiet --no-compile

.PHONY: install install-dev run test test-slow test-fast bench lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(PIP) $(TORCH)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/stratum serve

# Starts a throwaway PostgreSQL 15 and Redis on 127.0.0.1 (installing redis-server if missing), runs
# everything, removes them.
test: install-dev
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/test.sh

# The tests `make test` leaves out: second variants (the other database backend, ...) of heavy flows
# that `make test` already runs once. Same services and lint as `make test`.
test-slow: install-dev
	PATH="$(CURDIR)/$(BIN):$$PATH" TEST_MARKERS=extra bash scripts/test.sh

# Unit tests only, no services (quick feedback while developing).
test-fast: install-dev
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -q -m "not postgres and not slow" tests

# Gateway overhead vs a mock upstream (closed loop, and open loop at 100/500 req/s offered) and
# engine over HTTP (run.py); engine core in-process; multi-LoRA memory and mixed-batch throughput
# (lora_bench.py); prefix reuse on vs off with a long shared system prompt (prefix_bench.py).
bench: install-dev
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/engine_core_bench.py
	$(BIN)/python benchmarks/lora_bench.py
	$(BIN)/python benchmarks/prefix_bench.py

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

format: install-dev
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
