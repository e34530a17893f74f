# Two commands do all the set-up on a fresh machine (Python 3.11 + pip):
#   make run    serve the API on the bundled SQLite database at http://127.0.0.1:5000/users
#   make test   install what the tests need, then ruff, mypy and pytest
#   make bench  (optional) install the benchmark group, run bench/ (~2 min), write bench/RESULTS.md + warm.png
# All three create .venv on first use and reinstall only when the dependency files change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP_VERSION := 25.3

.PHONY: run test check lint typecheck pytest bench db db-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)

$(VENV)/.runtime-deps: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt --group dev
	touch $@ $(VENV)/.runtime-deps

$(VENV)/.bench-deps: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt --group bench
	touch $@ $(VENV)/.runtime-deps

run: $(VENV)/.runtime-deps
	$(BIN)/python handler.py

test: check pytest

check: lint typecheck

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-deps
	$(BIN)/mypy

pytest: $(VENV)/.dev-deps
	$(BIN)/python -m pytest

bench: $(VENV)/.bench-deps
	$(BIN)/python -m bench

# Rebuild data/users.db from data/schema.sql + data/users.csv (commit the result).
db: | $(BIN)/python
	$(BIN)/python scripts/build_db.py

db-check: | $(BIN)/python
	$(BIN)/python scripts/build_db.py --check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
