# The two commands a newcomer needs: `make demo` (the main job) and `make test` (every check).
# Each installs what it needs: a virtualenv in .venv (pinned by requirements.lock) and the
# control-plane binaries (cached in ~/.cache/grok-operator, built from their Go modules if absent).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests and the demo start the project's console scripts (grok-operator, grok-worker, grok).
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv binaries kueue-binary node test lint unit demo demo-down bench bench-quick protos clean

venv: $(STAMP)

# pip and the build backend come from the lock too, and the project is built with them (no build
# isolation, which would fetch whatever setuptools is newest that day).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements.lock --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -c requirements.lock --no-build-isolation -e '.[dev]'
	touch $(STAMP)

## Control-plane binaries: $KUBEBUILDER_ASSETS, else the cache, else a build with Go (about 10 minutes cold on 2 cores).
binaries: venv
	$(BIN)/grok-devcluster binaries

## The real node (as root on Debian/Ubuntu; skipped elsewhere, where the demo runs host processes):
## its pinned Debian packages (apt-get) and its Go-built binaries (kubelet, kube-proxy, CoreDNS).
node: venv binaries
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  $(BIN)/grok-devcluster setup-node && $(BIN)/grok-devcluster binaries kubelet kube-proxy coredns; \
	else echo "make node: not root on a Debian-like system: no real node (the demo runs host processes)"; fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv
	$(BIN)/pytest -q -m "not cluster and not multiprocess"

## Kueue, which only the tests (and `grok-devcluster up --kueue`) start: built before the tests run.
kueue-binary: venv
	$(BIN)/grok-devcluster binaries kueue

## Every check: lint, type checks, layering contracts, unit, control-plane integration and end-to-end tests.
test: venv binaries kueue-binary node lint
	$(BIN)/pytest -q -ra

## The main job: a local cluster, the chart, the operator, a tiny model served over gRPC, in real
## pods on a real node where one can run (root, Linux), else with host processes standing in.
demo: venv binaries node
	$(BIN)/python -m grok_devcluster.demo up

demo-down: venv
	$(BIN)/python -m grok_devcluster.demo down

bench-quick: venv
	$(BIN)/python -m bench quick

bench: bench-quick

protos: venv
	$(BIN)/python protos/generate.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
