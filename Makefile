# ddb-bridge: `make demo` and `make test` set everything up on a fresh machine (Python 3.11 + PyPI).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
SAM_VENV := .venv-sam
BIN := $(VENV)/bin
SAM := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 $(SAM_VENV)/bin/sam
export PYTHONPATH := $(CURDIR)/layers/bridge:$(CURDIR)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv test lint types cfn sam-validate sam-build pytest demo bench invoke clean
help:
	@echo "make demo    - local end-to-end migration on moto (sets everything up first)"
	@echo "make test    - lint, types, cfn-lint, sam validate + build, the whole pytest suite"
	@echo "make bench   - benchmarks against the naive baselines, measured in the same run"
	@echo "make invoke FN=table_replicator EVENT=events/ddb_stream_insert.json - one function, one event"

$(BIN)/.installed: requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $@

$(SAM_VENV)/bin/.installed: requirements/sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/sam.txt
	touch $@

venv: $(BIN)/.installed $(SAM_VENV)/bin/.installed

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(BIN)/.installed
	$(BIN)/mypy layers/bridge/ddb_bridge functions

cfn: $(BIN)/.installed
	$(BIN)/cfn-lint template.yaml target-account.yaml $(wildcard templates/*.yaml)

sam-validate: $(SAM_VENV)/bin/.installed
	$(SAM) validate --lint

sam-build: $(SAM_VENV)/bin/.installed
	$(SAM) build --build-dir .aws-sam/build

pytest: $(BIN)/.installed
	$(BIN)/pytest

test: venv lint types cfn sam-validate sam-build pytest

demo: $(BIN)/.installed
	$(BIN)/python scripts/demo.py

bench: $(BIN)/.installed
	$(BIN)/python scripts/bench.py

invoke: $(BIN)/.installed
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<function> EVENT=events/<file>.json"; exit 2; }
	$(BIN)/python scripts/invoke.py $(FN) $(EVENT)

clean:
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache
