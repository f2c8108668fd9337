# ddb-bridge: `make demo` and `make test` set everything up on a fresh machine (Python 3.11 + PyPI).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
BIN := $(VENV)/bin
SAM := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 $(SAM_VENV)/bin/sam
TEMPLATES := template.yaml $(sort $(wildcard templates/*.yaml)) target-account.yaml
RENDERS := .aws-sam/renders
export PYTHONPATH := $(CURDIR)/layers/bridge:$(CURDIR)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv test lint types cfn sam-validate sam-build checkov pytest demo bench invoke clean
help:
	@echo "make demo    - local end-to-end migration on moto (sets everything up first)"
	@echo "make test    - lint, types, cfn-lint, sam validate + build, checkov, the whole pytest suite"
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

$(CHECKOV_VENV)/bin/.installed: requirements/checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/checkov.txt
	touch $@

venv: $(BIN)/.installed $(SAM_VENV)/bin/.installed $(CHECKOV_VENV)/bin/.installed

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(BIN)/.installed
	$(BIN)/mypy layers/bridge/ddb_bridge functions

cfn: $(BIN)/.installed
	$(BIN)/cfn-lint $(TEMPLATES)

# The root here; every nested template goes through SAM's transform in `make checkov` (each scenario's render).
sam-validate: $(SAM_VENV)/bin/.installed
	$(SAM) validate --lint

sam-build: $(SAM_VENV)/bin/.installed
	$(SAM) build --build-dir .aws-sam/build

# Every scenario rendered to plain CloudFormation (conditions resolved, SAM's transform applied), then checkov.
checkov: $(SAM_VENV)/bin/.installed $(CHECKOV_VENV)/bin/.installed
	rm -rf $(RENDERS)
	$(SAM_VENV)/bin/python scripts/render_template.py --sam --out $(RENDERS)
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml --directory $(RENDERS)

pytest: $(BIN)/.installed
	$(BIN)/pytest

test: venv lint types cfn sam-validate sam-build checkov pytest

demo: $(BIN)/.installed
	$(BIN)/python scripts/demo.py

bench: $(BIN)/.installed
	$(BIN)/python scripts/bench.py

invoke: $(BIN)/.installed
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<function> EVENT=events/<file>.json"; exit 2; }
	$(BIN)/python scripts/invoke.py $(FN) $(EVENT)

clean:
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache
