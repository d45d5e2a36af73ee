# Quick start: `make run` serves the demo app at https://localhost:8443 (HTTP/2, dev certificate);
# `make test` runs the whole test suite, then the interoperability suites (`make interop` alone:
# curl, nghttp, h2load, h2spec... see interop/README.md); `make bench` compares throughput, latency and
# memory with Hypercorn, uvicorn, Granian and h2corn (needs h2load and wrk, see benchmarks/README.md); `make abuse` floods a server with
# abusive HTTP/2, HTTP/1.1 and WebSocket clients and times a well-behaved one meanwhile
# (ABUSE_ARGS="--seconds 2 --attack rapid-reset"). All create .venv on first use.
# `make test-matrix` runs pytest on Python 3.11, 3.12, 3.13 and on the oldest allowed dependencies
# (ci/test-matrix.sh); `make autobahn` installs Autobahn|Testsuite's wstest (needs Python 2.7) into
# .ci-cache/autobahn, which `make test` / `make interop` then use. .ci/run runs all of it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8443
# wstest installed by `make autobahn`, when it is: the interop suite `autobahn` then runs.
export WSTEST ?= $(wildcard $(CURDIR)/.ci-cache/autobahn/bin/wstest)

.PHONY: run test test-matrix autobahn interop bench abuse clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[uvloop]"
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,uvloop]"
	touch $@

$(VENV)/.bench-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench,uvloop]"
	touch $@

run: $(VENV)/.run-deps
	$(BIN)/plexicorn demo:app --app-dir examples --dev-cert --bind $(HOST):$(PORT)

test: $(VENV)/.test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m interop $(INTEROP_ARGS)

test-matrix:
	bash ci/test-matrix.sh $(MATRIX)

autobahn:
	bash ci/install-autobahn.sh

interop: $(VENV)/.test-deps
	$(BIN)/python -m interop $(INTEROP_ARGS)

bench: $(VENV)/.bench-deps
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# The test extra has what abuse.py needs beyond the server: httpx[http2] for its probe client.
abuse: $(VENV)/.test-deps
	$(BIN)/python benchmarks/abuse.py $(ABUSE_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
