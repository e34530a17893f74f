# Two commands do all the set-up on a fresh machine (Python 3.13, as serverless.yml's runtime, + pip):
#   make run    serve the API on the bundled SQLite database at http://127.0.0.1:5000/users
#   make test   install what the tests need, then ruff, mypy and pytest
#   make bench  (optional) install the benchmark group, run bench/ (~2 min), write bench/RESULTS.md + warm.png
#   make lock   (maintainers) re-resolve the hashed lock files after editing requirements*.in or
#               pyproject.toml's [dependency-groups]; needs PyPI
# All three create .venv on first use and reinstall only when a lock file changes. They install
# lock files alone, each package pinned with its hashes (pip --require-hashes), wheels only.

# The Lambda runtime's Python (serverless.yml `runtime: python3.13`; .python-version tells pyenv).
PYTHON ?= python3
PYTHON_VERSION := $(shell cat .python-version)
VENV := .venv
BIN := $(VENV)/bin
# Hash-checked installs of the lock files `make lock` writes; wheels only (the locks say so too),
# so no unpinned build backend is ever fetched to build an sdist.
PIP_INSTALL = $(BIN)/python -m pip install --progress-bar=off --disable-pip-version-check --require-hashes --only-binary=:all:

# Stop at once, in one line, on the wrong interpreter: a venv of another Python would test what
# Lambda does not run (and pip would fail later with a long traceback).
_found_python := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
_venv_python := $(shell [ -x $(BIN)/python ] && $(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(filter-out clean help,$(or $(MAKECMDGOALS),help)),)
else
ifneq ($(_found_python),$(PYTHON_VERSION))
$(error Python $(PYTHON_VERSION) is needed (serverless.yml runtime python$(PYTHON_VERSION)) but '$(PYTHON)' is $(or $(_found_python),not found): install it (pyenv install $(PYTHON_VERSION)) or run make PYTHON=/path/to/python$(PYTHON_VERSION))
endif
ifneq ($(_venv_python),)
ifneq ($(_venv_python),$(PYTHON_VERSION))
$(error .venv runs Python $(_venv_python), not $(PYTHON_VERSION): remove it (make clean) and run make again)
endif
endif
endif

.DEFAULT_GOAL := help
.PHONY: help deploy run test test-fast check lint typecheck pytest node-deps bench db db-check clean lock package invoke offline bench-artifact

# Plain `make` lists the targets: each one's `## ` comment.
help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 32

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.pip: requirements-pip.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements-pip.txt
	touch $@

# requirements-dev.txt and requirements-bench.txt hold requirements.txt's packages at the same
# versions (make lock resolves them under it), so installing either also installs the runtime.
$(VENV)/.runtime-deps: requirements.txt $(VENV)/.pip
	@echo "installing the runtime packages into $(VENV) (about 15 s)"
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements-dev.txt $(VENV)/.pip
	@echo "installing the test tools and drivers into $(VENV) (about 50 s)"
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@ $(VENV)/.runtime-deps

$(VENV)/.bench-deps: requirements-bench.txt $(VENV)/.pip
	@echo "installing the benchmark packages into $(VENV) (about 30 s)"
	$(PIP_INSTALL) -r requirements-bench.txt
	touch $@ $(VENV)/.runtime-deps

PORT ?= 5000
run: $(VENV)/.runtime-deps ## serve the API on the bundled SQLite database: http://127.0.0.1:5000/users (PORT=...)
	$(BIN)/python handler.py --port $(PORT)

test: check pytest ## install what the tests need, then ruff, mypy and the full pytest suite

# The inner loop: pytest without the tests marked slow (tests/deploy, PostgreSQL servers, the
# browser, deadlines waited out, ~1M-row tables); no ruff, no mypy, no node_modules.
test-fast: $(VENV)/.dev-deps ## pytest without the slow tests (under a minute)
	$(BIN)/python -m pytest -m "not slow" -q

check: lint typecheck

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-deps
	$(BIN)/mypy

pytest: $(VENV)/.dev-deps node-deps
	$(BIN)/python -m pytest

# The Serverless CLI (osls + plugins) for the invoke-local/offline/package tests. Without npm
# those tests skip, saying why.
node-deps:
	@if command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory node_modules/.package-lock.json; \
	else \
		echo "npm not found: the Serverless CLI tests will be skipped"; \
	fi

node_modules/.package-lock.json: package.json package-lock.json
	@echo "installing the Serverless CLI into node_modules (about 40 s)"
	npm ci --no-audit --no-fund --loglevel=error --progress=true

bench: $(VENV)/.bench-deps ## run bench/ (~2 min), write bench/RESULTS.md + warm.png
	$(BIN)/python -m bench

# The Serverless CLI with this venv's python3.13 first on PATH (pip, the bytecode compiler and
# the local flows run it) and no EC2 metadata probe: package, invoke and offline need no AWS.
OSLS := PATH="$(CURDIR)/$(BIN):$$PATH" AWS_EC2_METADATA_DISABLED=true npx osls
EVENT ?= events/http-api-v2.json

# The deployment zip, .serverless/users-api.zip, exactly as `osls deploy` uploads it.
package: node_modules/.package-lock.json | $(BIN)/python ## build .serverless/users-api.zip, as deploy uploads it
	$(OSLS) package

# Each prerequisite checked in one line, before osls fails on it with a bare error
# (without python3.13 on PATH: "spawn python3.13 ENOENT").
STAGE ?=
deploy: ## deploy to AWS: make deploy STAGE=dev (needs python3.13, node/npm, AWS credentials)
	@test -n "$(STAGE)" || { echo "deploy: say which stage: make deploy STAGE=dev"; exit 1; }
	@command -v python3.13 >/dev/null || [ -x $(BIN)/python3.13 ] || { echo "deploy: python3.13 not found: install it (pyenv install $(PYTHON_VERSION)) or run make test first to create $(VENV)"; exit 1; }
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "deploy: node and npm are needed (Node.js 20 or later)"; exit 1; }
	@[ -f node_modules/.package-lock.json ] || { echo "deploy: node_modules missing: run npm ci (or make node-deps)"; exit 1; }
	@[ -n "$$AWS_ACCESS_KEY_ID$$AWS_PROFILE$$AWS_CONTAINER_CREDENTIALS_FULL_URI" ] || [ -f "$${AWS_SHARED_CREDENTIALS_FILE:-$$HOME/.aws/credentials}" ] || [ -f "$${AWS_CONFIG_FILE:-$$HOME/.aws/config}" ] || { echo "deploy: no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run aws configure"; exit 1; }
	$(OSLS) deploy --stage $(STAGE)

# One invocation of the handler with a sample event: make invoke EVENT=events/rest-v1.json
# The cold start is tried first: a bad setting (or SQLITE_COPY_PATH, bundle) is then one line
# (handler.py prints it and exits 1), not also osls's stack trace about its failed child.
invoke: $(VENV)/.runtime-deps node_modules/.package-lock.json ## one invocation of the handler: make invoke EVENT=events/rest-v1.json
	@$(BIN)/python -c 'import handler'
	$(OSLS) invoke local --function api --path $(EVENT)

# Both APIs on http://127.0.0.1:3000 (/users, /dev/users) until Ctrl-C.
offline: $(VENV)/.runtime-deps node_modules/.package-lock.json ## both APIs on http://127.0.0.1:3000 under serverless-offline
	$(OSLS) offline

# Cold start of the packaged zip: as shipped vs fully precompiled vs a bare interpreter (~1 min).
bench-artifact: package ## cold start of the packaged zip (~1 min)
	$(BIN)/python -m bench.artifact_cold --artifact .serverless/users-api.zip

# Rebuild data/users.db from data/schema.sql + data/users.csv (commit the result).
db: | $(BIN)/python
	$(BIN)/python scripts/build_db.py

db-check: | $(BIN)/python
	$(BIN)/python scripts/build_db.py --check

# Rewrite app/web/openapi.json (served at GET /openapi.json) from docs/openapi.yaml.
.PHONY: openapi
openapi: $(VENV)/.dev-deps
	$(BIN)/python scripts/build_openapi.py

# Page latency and peak RSS of GET /users at 1k, 100k and 1M users (~10 s; prints a table).
.PHONY: bench-pagination
bench-pagination: $(VENV)/.runtime-deps
	$(BIN)/python -m bench.pagination

# Warm /users on PostgreSQL: pooled vs NullPool vs engine per request, and 8 simulated containers.
.PHONY: bench-postgres
bench-postgres: $(VENV)/.dev-deps
	$(BIN)/python -m bench.postgres_pool

# GET /users on PostgreSQL across a 1 ms-each-way loopback proxy, against one psycopg query.
.PHONY: bench-postgres-network
bench-postgres-network: $(VENV)/.dev-deps
	$(BIN)/python -m bench.postgres_network

# Re-resolve every lock from its input for the Lambda runtime (Python 3.13, Linux x86_64:
# manylinux2014 wheels), with the hashes of every file of each pinned release. Each lock is
# resolved under the ones before it, so a package shared by two locks has one version in both.
# uv is installed (hash-checked, from requirements-uv.txt) beside .venv, not into it.
UV_DIR := $(VENV)/uv
UV_COMPILE = $(UV_DIR)/bin/uv pip compile --quiet --generate-hashes --python-version $(PYTHON_VERSION) \
	--python-platform x86_64-manylinux2014 --only-binary :all: --emit-build-options --custom-compile-command "make lock"

$(UV_DIR)/bin/uv: requirements-uv.txt $(VENV)/.pip
	$(PIP_INSTALL) --target $(UV_DIR) --upgrade -r requirements-uv.txt
	touch $@

lock: $(UV_DIR)/bin/uv ## (maintainers) re-resolve the hashed lock files; needs PyPI
	$(UV_COMPILE) requirements.in -o requirements.txt
	$(UV_COMPILE) requirements-postgres.in -c requirements.txt -o requirements-postgres.txt
	$(UV_COMPILE) requirements-aws.in -c requirements.txt -o requirements-aws.txt
	$(UV_COMPILE) requirements.in requirements-postgres.in requirements-aws.in --group pyproject.toml:dev \
		-c requirements.txt -c requirements-postgres.txt -c requirements-aws.txt -o requirements-dev.txt
	$(UV_COMPILE) requirements.in --group pyproject.toml:bench -c requirements-dev.txt -o requirements-bench.txt
	$(UV_COMPILE) --group pyproject.toml:pip -o requirements-pip.txt
	$(UV_COMPILE) --group pyproject.toml:uv -o requirements-uv.txt

clean: ## remove .venv, node_modules and build output
	rm -rf $(VENV) node_modules .serverless .pytest_cache .mypy_cache .ruff_cache .coverage

# 10,000 mixed invocations through one warm handler: RSS, fds, threads, checked-out connections.
.PHONY: bench-leak
bench-leak: $(VENV)/.runtime-deps
	$(BIN)/python -m bench.leak
