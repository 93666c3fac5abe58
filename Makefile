# QuizMesh: every command a developer or CI needs. Only Python 3.11+ is assumed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What running needs (`make run`: the services, Envoy, valkey, nats-server), and on
# top of it the development set (`make test` and every other target).
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: venv venv-run lock gen check-gen lint breaking run browser mariadb wrk test ci clean k8s-envoy k8s-check bench

venv-run: $(RUN_STAMP)
$(RUN_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[run]"
	touch $(RUN_STAMP)

venv: $(STAMP)
$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

## Re-resolve constraints.txt (the exact versions) from pyproject.toml's ranges.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q -e ".[dev]"
	{ sed -n '/^#/p' constraints.txt; .venv-lock/bin/python -m pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .venv-lock

## Regenerate gen/ (messages, gRPC stubs, .pyi stubs, Envoy descriptor set).
gen: venv
	PYTHON=$(abspath $(BIN)/python) bash scripts/gen.sh

## Fail when gen/ (or web/js/generated/) differs from what the protos produce.
check-gen: gen
	@git diff --exit-code --stat -- gen third_party web/js/generated || (echo "gen/ or web/js/generated/ is stale: run 'make gen' and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- gen third_party web/js/generated)" || (git status --porcelain -- gen third_party web/js/generated; echo "gen/ or web/js/generated/ has untracked files: run 'make gen' and commit" >&2; exit 1)

## buf lint, buf breaking (against the previous commit of main), ruff, the import
## boundaries (.importlinter), mypy, k8s-check.
lint: venv k8s-check
	$(BIN)/buf lint
	bash scripts/buf-breaking.sh
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy services quizctl devstack tests benchmarks scripts

## Render the Envoy config the Kubernetes manifests mount (k8s/base/envoy/); commit it.
k8s-envoy: venv
	PYTHON=$(abspath $(BIN)/python) bash scripts/k8s-envoy.sh

## hadolint the Dockerfile, kustomize every overlay, validate against the k8s schemas.
k8s-check: venv
	BIN=$(abspath $(BIN)) bash scripts/k8s-check.sh

## Start the whole stack locally (Ctrl-C stops everything it started).
run: venv-run
	$(BIN)/quizmesh-dev

## Headless Chromium for the browser tests (tests/browser): Debian's `chromium`
## package, installed when /usr/bin/chromium is missing (as root, or with sudo).
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	@test -x $(CHROMIUM)

## MariaDB server binaries for the tests' private MariaDB where no MySQL answers at
## QUIZMESH_TEST_MYSQL_URL (devstack/mariadb.py starts and removes it): Debian's
## `mariadb-server`, installed when mariadbd is missing.
MARIADBD := /usr/sbin/mariadbd
mariadb:
	@test -x $(MARIADBD) || { \
	  echo "installing Debian's mariadb-server for the tests' private MariaDB"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mariadb-server; }
	@test -x $(MARIADBD)

## wrk (C HTTP load generator) for benchmarks/gateway.py, from Debian's packages.
wrk:
	@command -v wrk >/dev/null || { \
	  echo "installing Debian's wrk for the gateway benchmark"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }

## The whole test suite against real Redis, NATS, MySQL/MariaDB, Envoy and Chromium.
test: venv check-gen lint browser mariadb
	$(BIN)/python -m pytest -q

## Every benchmark of docs/performance.md, against the local Redis/NATS/MariaDB (own
## prefixes and databases, removed after). Output: bench-results/ (one .txt each, the
## last line of each is its JSON) and the intake chart. ~12 minutes on 2 cores;
## smaller with e.g. `make bench BENCH_PLAYERS=100000 BENCH_WATCHERS=1000,5000`.
BENCH_PLAYERS ?= 1000000
BENCH_WATCHERS ?= 1000,5000,10000
BENCH_OUT := bench-results
bench: venv wrk
	mkdir -p $(BENCH_OUT)
	$(BIN)/python -m benchmarks.intake | tee $(BENCH_OUT)/intake.txt
	$(BIN)/python -m benchmarks.chart $(BENCH_OUT)/intake.txt -o $(BENCH_OUT)/performance-intake.png
	$(BIN)/python -m benchmarks.answer_cost | tee $(BENCH_OUT)/answer_cost.txt
	$(BIN)/python -m benchmarks.gateway | tee $(BENCH_OUT)/gateway.txt
	$(BIN)/python -m benchmarks.leaderboard_scale --players $(BENCH_PLAYERS) | tee $(BENCH_OUT)/leaderboard_scale.txt
	$(BIN)/python -m benchmarks.board_updates --players $(BENCH_PLAYERS) | tee $(BENCH_OUT)/board_updates.txt
	$(BIN)/python -m benchmarks.own_ranks | tee $(BENCH_OUT)/own_ranks.txt
	$(BIN)/python -m benchmarks.stadium --players $(BENCH_PLAYERS) | tee $(BENCH_OUT)/stadium.txt
	$(BIN)/python -m benchmarks.fanout --watchers $(BENCH_WATCHERS) | tee $(BENCH_OUT)/fanout.txt
	$(BIN)/python -m benchmarks.fanout --watchers 20000 --processes 2 | tee $(BENCH_OUT)/fanout-2.txt
	$(BIN)/python -m benchmarks.end_to_end --players 1000 --questions 10 | tee $(BENCH_OUT)/end_to_end.txt
	$(BIN)/python -m benchmarks.sync_job --players 100000 --changed 1000 | tee $(BENCH_OUT)/sync_100k.txt
	$(BIN)/python -m benchmarks.sync_job --players $(BENCH_PLAYERS) --changed 1000 | tee $(BENCH_OUT)/sync_1m.txt

clean:
	rm -rf $(VENV) .quizmesh .pytest_cache .mypy_cache .ruff_cache
