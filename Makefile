# airmigrate: `make demo` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pytest workers: 3 on this 2-core machine. Measured 2026-12-06 on one machine, clean clones of the same code:
# 2 workers 1,469 s with the cores 26% idle (vmstat: the tests wait on Airflow's loops, subprocesses, servers),
# 3 workers 1,245 s, 9% idle, green. (2026-12-05, another machine: 3 were 1,309 s against 1,277 s with 2.)
# `make check` is CPU only: 2.
TEST_WORKERS ?= 3
CHECK_WORKERS ?= 2

.PHONY: setup demo stop test check lint airflow clean

setup: $(STAMP)

# Locked, reproducible install; bytecode compiled (Airflow's start-up doubles without .pyc files).
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install -q "uv==0.13.9"
	$(BIN)/uv pip sync -q --compile-bytecode -p $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --compile-bytecode --no-deps -p $(BIN)/python -e .
	touch $@

demo: setup
	$(BIN)/airmigrate demo

# `make demo` leaves its embedded PostgreSQL running (the next demo and `airmigrate status` reuse it): this stops it
stop: setup
	$(BIN)/python -m airmigrate.devdb stop

# The whole suite (real PostgreSQL, real Airflow, the browser); its last line is pytest's count and time, after
# the 15 slowest tests.
# The project's own bytecode first (src, dags, plugins; only what changed): where PYTHONDONTWRITEBYTECODE is set (this
# machine's environment) no process writes it, and every CLI run, Airflow task and DAG parse the tests start compiles
# airmigrate's ~109 modules again (0.2 s each; tests/test_history.py 45.2 s without, 43.9 s with).
test: setup lint
	$(BIN)/python -m compileall -q -j 0 src dags plugins
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -q -ra --durations=15

# The inner loop, no servers, under a minute: the import contracts, the lint of the project's migrations and
# every test that needs neither a database server nor Airflow's metadata database.
check: setup lint
	AIRMIGRATE_CHECK=1 $(BIN)/python -m pytest -n $(CHECK_WORKERS) -q -p no:cacheprovider

# The architecture's import contracts (pyproject.toml [tool.importlinter]) and the project's own migrations.
lint: setup
	$(BIN)/lint-imports --no-logo
	$(BIN)/airmigrate lint migrations/

airflow: setup
	$(BIN)/python -m airmigrate.airflow.local

clean:
	rm -rf var .pytest_cache
