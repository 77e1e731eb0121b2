# feedline — two commands on a fresh machine: `make run`, then `make test`.
# Prerequisites: Python 3.11, Java 17, Maven; root (or sudo) to apt-get redis-server (and
# chromium, for `make test`).

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
FEEDCTL := $(VENV)/bin/feedctl
STATE := .local
STAMP := $(VENV)/.installed

.PHONY: help deps system-deps test-deps venv jars run stop status test test-unit test-integration test-faults toxiproxy lint clean-state \
        bench-fanout bench-serve bench-rebuild

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

deps: system-deps venv jars ## everything the stack needs (idempotent)

system-deps: ## redis-server from Debian packages; checks java and mvn
	@command -v java >/dev/null || { echo "Java 17 is required"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required"; exit 1; }
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q redis-server; }

test-deps: deps toxiproxy ## what only the tests need: chromium (Debian package) for the /docs browser test
	@command -v chromium >/dev/null || { \
	  echo "installing chromium (Debian package, for the /docs and /redoc browser test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

# Toxiproxy, the fault proxy of tests/faults/test_slow_network.py, built from its pinned Go
# module (its server command is cmd/server) into $(STATE)/bin/toxiproxy-server. Go keeps its
# module and build caches in the home directory (like pip's and Maven's), so a fresh clone
# builds it from the cache.
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
TOXIPROXY_VERSION := v2.5.0
TOXIPROXY := $(STATE)/bin/toxiproxy-server

toxiproxy: $(TOXIPROXY) ## the fault proxy the slow-network tests use (go install, pinned)

$(TOXIPROXY):
	@test -x $(GO) || command -v $(GO) >/dev/null || { echo "Go is required for $@"; exit 1; }
	GOBIN=$(abspath $(STATE))/go/bin \
	  $(GO) install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)
	@mkdir -p $(@D) && mv $(STATE)/go/bin/server $@

venv: $(STAMP) ## the Python environment in .venv (pinned by constraints.txt)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $@

jars: $(STATE)/jars/.fetched ## Kafka, Cassandra and the Flink Kafka connector, via Maven

$(STATE)/jars/.fetched: infra/maven/pom.xml infra/maven/kafka/pom.xml infra/maven/cassandra/pom.xml infra/maven/flink/pom.xml
	mvn -q -B -f infra/maven/pom.xml package -Djars.dir=$(CURDIR)/$(STATE)/jars
	@touch $@

# The sample workload `make run` produces (small enough to process in about a minute).
SAMPLE := --users 1000 --posts 800 --mean-followers 20 --max-followers 400 --seed 42

run: deps ## stack up (API included), jobs deployed, sample workload in, a feed printed and served
	$(FEEDCTL) local up
	$(FEEDCTL) jobs deploy all --if-not-running
	$(FEEDCTL) load $(SAMPLE)
	$(FEEDCTL) jobs wait --timeout 900
	$(FEEDCTL) feed --sample --limit 10 --api

stop: ## stop everything `make run` started
	@test -x $(FEEDCTL) && $(FEEDCTL) local down || echo "nothing to stop (no .venv)"

status: ## health of each local service
	$(FEEDCTL) local status

lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test-unit: venv ## unit tests only (no services)
	$(VENV)/bin/pytest tests/unit -q

test-integration: test-deps ## integration and e2e tests on the real local stack
	$(VENV)/bin/pytest tests/integration tests/e2e -q

test-faults: deps toxiproxy ## fault injection on the real local stack (freezes its services; docs/RELIABILITY.md)
	$(VENV)/bin/pytest -m faults tests/faults -q

test: test-deps lint ## lint, then every test; the fixtures start the stack if it is not up
	$(VENV)/bin/pytest -q

bench-fanout: deps ## fan-out throughput and freshness (docs/BENCHMARKS.md)
	$(FEEDCTL) local up
	$(PY) -m bench.fanout --out docs/bench-fanout-$$(date -u +%F).json

bench-serve: deps ## feed reads/s and latency over HTTP with wrk (docs/BENCHMARKS.md)
	@command -v wrk >/dev/null || { \
	  echo "installing wrk (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q wrk; }
	$(FEEDCTL) local up
	$(PY) -m bench.serve --out docs/bench-serve-$$(date -u +%F).json

bench-rebuild: deps ## full rebuild of the standard workload from the archive
	$(FEEDCTL) local up
	$(PY) -m bench.rebuild

clean-state: stop ## delete all local data and logs (keeps the fetched jars)
	find $(STATE) -mindepth 1 -maxdepth 1 ! -name jars -exec rm -rf {} +
