# The README's two commands: `make experiment` and `make test`. Both bootstrap .venv first.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
WORKSPACE ?= workspace
PYTEST_ARGS ?=
## The suite runs on pytest-xdist workers, one per CPU core (a third worker on 2 cores gave the
## same wall time and 7% more CPU: each worker imports the stack and starts its own session
## fixtures; docs/benchmarks.md, "Stop 24"), at most PYTEST_MAX_WORKERS (the suite is sized for
## 2 cores). Slow tests start first and the fast tier
## fills the end (tests/conftest.py). Tests sharing a session fixture stay on one worker
## (xdist_group, --dist loadgroup). PYTEST_WORKERS=0 runs it in one process. `make test-fast`
## runs the fast tier alone in one process (CPU-bound: two workers took 115 s against 89 s).
PYTEST_WORKERS ?= $(shell nproc)
PYTEST_MAX_WORKERS ?= 3
XDIST := -n $(PYTEST_WORKERS) --maxprocesses $(PYTEST_MAX_WORKERS) --dist loadgroup

.PHONY: setup experiment test test-fast lint typecheck format bench image mutation clean

setup:
	@bash .ci/bootstrap.sh

## The main job on the embedded default (synthetic MiniVess, local MLflow/DVC/Prefect).
experiment: setup
	$(BIN)/minivess experiment --workspace $(WORKSPACE)

## What CI runs: lint, the type check, then the whole suite (both tiers, one xdist session).
test: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q $(XDIST) $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/pytest -m "not slow" -q $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

## mypy on src/ (settings in pyproject.toml [tool.mypy]).
typecheck: setup
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

## The CPU image without a Docker daemon (buildah + debootstrap; see docs/targets.md).
image:
	bash docker/build-oci.sh $(IMAGE_TAG)

## Mutation testing (not run by CI): mutmut over planning/, training/checkpoint.py and
## serving/guard.py ([tool.mutmut] in pyproject.toml). MUTANTS= narrows it, e.g.
## MUTANTS='minivess.serving.guard*'. Prints the killed/survived counts; see docs/benchmarks.md.
MUTMUT_VERSION := 3.3.1
MUTANTS ?=
MUTMUT_CHILDREN ?= 2
mutation: setup
	$(BIN)/pip install -q mutmut==$(MUTMUT_VERSION)
	PYTHONPATH=$(CURDIR)/.ci PYTEST_ADDOPTS='-m "not slow" -p no:cacheprovider -p mutmut_compat' \
		$(BIN)/mutmut run --max-children $(MUTMUT_CHILDREN) $(MUTANTS) || true
	$(BIN)/mutmut results

clean:
	rm -rf mutants $(WORKSPACE) .pytest_cache .ruff_cache
