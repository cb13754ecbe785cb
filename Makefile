# Two entry points a fresh machine needs (see README):
#   make demo   installs everything and deploys + scores the quickstart model locally
#   make test   installs everything and runs the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MEMBERS := -e ./aml_core -e ./providers/local -e ./providers/aks -e ./emulator -e ./contract_tests -e ./providers/azure-common -e ./providers/aci -e ./providers/appservice -e ./providers/functions

.PHONY: venv system-deps demo test lint-imports bench clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade uv

venv: $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python $(MEMBERS) -r requirements-dev.txt

# Debian packages for the slow tiers (container engine, reference registry, load generator).
system-deps:
	bash scripts/install-system-deps.sh
	bash scripts/install-azurite.sh

demo: venv
	$(BIN)/python examples/quickstart/deploy.py

lint-imports: venv
	$(BIN)/lint-imports

test: venv system-deps
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --timeout 600 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV)
