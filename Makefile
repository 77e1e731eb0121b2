# feedline — two commands on a fresh machine: `make run`, then `make test`.
# Prerequisites: Python 3.11, Java 17, Maven; root (or sudo) to apt-get redis-server,
# prometheus, prometheus-pushgateway and prometheus-redis-exporter (and chromium, for
# `make test`).

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
FEEDCTL := $(VENV)/bin/feedctl
STATE := .local
STAMP := $(VENV)/.installed

.PHONY: help deps system-deps test-deps venv jars beam-runner run stop status test test-unit test-integration test-faults toxiproxy lint clean-state \
        bench-fanout bench-serve bench-rebuild

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

deps: system-deps venv jars ## everything the stack needs (idempotent)

# Debian packages the stack runs; each one's command has the package's name. prometheus
# brings promtool (the alert-rule tests).
DEBIAN_PACKAGES := redis-server prometheus prometheus-pushgateway prometheus-redis-exporter

system-deps: ## redis-server and the prometheus* packages (Debian); checks java and mvn
	@command -v java >/dev/null || { echo "Java 17 is required"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required"; exit 1; }
	@missing=$$(for p in $(DEBIAN_PACKAGES); do command -v $$p >/dev/null || echo $$p; done); \
	[ -z "$$missing" ] || { \
	  echo "installing" $$missing "(Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $$missing; }

test-deps: deps toxiproxy beam-runner ## what only the tests need: chromium (Debian package) for the /docs browser test
	@command -v chromium >/dev/null || { \
	  echo "installing chromium (Debian package, for the /docs and /redoc browser test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

# The rebuild's `--runner flink` (pipelines/batch/flink_runner.py): a second virtualenv with
# the apache-beam of Beam's Flink job server (PyFlink pins .venv's Beam to 2.61), feedline in
# it without its dependencies, and the job server's classpath via Maven. Pinned by
# constraints-beam.txt and infra/maven/beam-flink/pom.xml.
BEAM_VENV := .venv-beam
BEAM_STAMP := $(BEAM_VENV)/.installed
BEAM_JARS := $(STATE)/jars/beam-flink-job-server/.fetched

beam-runner: $(BEAM_STAMP) $(BEAM_JARS) ## the Beam venv and Flink job server of `feedctl rebuild --runner flink`

$(BEAM_STAMP): requirements-beam.txt constraints-beam.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	@test -x $(BEAM_VENV)/bin/python || $(PYTHON) -m venv $(BEAM_VENV)
	$(BEAM_VENV)/bin/python -m pip install -q --upgrade pip setuptools wheel
	$(BEAM_VENV)/bin/python -m pip install -q -c constraints-beam.txt -r requirements-beam.txt
	$(BEAM_VENV)/bin/python -m pip install -q --no-deps -e .
	@touch $@

$(BEAM_JARS): infra/maven/pom.xml infra/maven/beam-flink/pom.xml
	mvn -q -B -f infra/maven/beam-flink/pom.xml package -Djars.dir=$(CURDIR)/$(STATE)/jars
	@touch $@

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

jars: $(STATE)/jars/.fetched ## Kafka, Cassandra (+ JMX exporter), the Flink Kafka connector and metrics reporter, via Maven

$(STATE)/jars/.fetched: infra/maven/pom.xml infra/maven/kafka/pom.xml infra/maven/cassandra/pom.xml infra/maven/flink/pom.xml infra/maven/flink-metrics/pom.xml infra/maven/jmx-exporter/pom.xml
	mvn -q -B -f infra/maven/pom.xml package -Djars.dir=$(CURDIR)/$(STATE)/jars
	@touch $@

# The sample workload `make run` produces (small enough to process in about a minute).
SAMPLE := --users 1000 --posts 800 --mean-followers 20 --max-followers 400 --seed 42

run: deps ## stack up (API included), jobs deployed, sample workload in, notifications and a feed printed, the feed served
	$(FEEDCTL) local up
	$(FEEDCTL) jobs deploy all --if-not-running
	$(FEEDCTL) load $(SAMPLE)
	$(FEEDCTL) jobs wait --timeout 900
	$(FEEDCTL) notifications --sample --limit 10
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
	$(VENV)/bin/pytest -q --durations=60

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

bench-rebuild: deps ## full rebuild of the standard workload from the archive (REBUILD_ARGS="--runner flink": on Beam's Flink runner)
	$(FEEDCTL) local up
	$(PY) -m bench.rebuild $(REBUILD_ARGS)

clean-state: stop ## delete all local data and logs (keeps the fetched jars)
	find $(STATE) -mindepth 1 -maxdepth 1 ! -name jars -exec rm -rf {} +
