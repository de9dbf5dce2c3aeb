# airmigrate: `make demo` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pytest workers: 2 on this 2-core machine (tests wait on PostgreSQL and Airflow more than on CPU)
TEST_WORKERS ?= 2

.PHONY: setup demo stop test airflow clean

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

test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -q -ra --durations=15

airflow: setup
	$(BIN)/python -m airmigrate.airflow.local

clean:
	rm -rf var .pytest_cache
