# Two entry points for a fresh machine with Python 3.11+ and make:
#   make run   - create .venv, install, start gpuroute on its embedded defaults
#                (make run HTTP_PORT=8080 NATS_PORT=0: other ports; 0 = any free)
#   make test  - same venv, ruff + mypy + the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# empty: gpuroute's own defaults (gateway 8000, NATS 4222)
HTTP_PORT ?=
NATS_PORT ?=

run: $(STAMP)
	$(BIN)/gpuroute up$(if $(HTTP_PORT), --http-port $(HTTP_PORT))$(if $(NATS_PORT), --nats-port $(NATS_PORT))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# PYTHONDONTWRITEBYTECODE emptied: with it set, pytest re-rewrites the asserts of
# every test module and plugin on each run and nothing is compiled once (~7 s of
# CPU per run here, more for each gpuroute subprocess a test starts).
# PYTEST_ARGS: e.g. "-n 2 --dist loadfile" (pytest-xdist) runs two workers: ~40%
# less wall time on an idle 2-core machine, none under load; not the default
# until the whole suite has been green with it several runs in a row.
PYTEST_ARGS ?=
test: lint typecheck
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/advise.py

clean:
	rm -rf $(VENV) .gpuroute .pytest_cache .mypy_cache .ruff_cache
