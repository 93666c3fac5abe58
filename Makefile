# QuizMesh: every command a developer or CI needs. Only Python 3.11+ is assumed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv gen check-gen lint breaking run test ci clean

venv: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

## Regenerate gen/ (messages, gRPC stubs, .pyi stubs, Envoy descriptor set).
gen: venv
	PYTHON=$(abspath $(BIN)/python) bash scripts/gen.sh

## Fail when gen/ differs from what the protos produce.
check-gen: gen
	@git diff --exit-code --stat -- gen third_party || (echo "gen/ is stale: run 'make gen' and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- gen third_party)" || (git status --porcelain -- gen third_party; echo "gen/ has untracked files: run 'make gen' and commit" >&2; exit 1)

## buf lint, buf breaking (against the previous commit of main), ruff, mypy.
lint: venv
	$(BIN)/buf lint
	bash scripts/buf-breaking.sh
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy services quizctl devstack tests benchmarks

## Start the whole stack locally (Ctrl-C stops everything it started).
run: venv
	$(BIN)/quizmesh-dev

## The whole test suite against real Redis, NATS, MySQL/SQLite and Envoy.
test: venv check-gen lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .quizmesh .pytest_cache .mypy_cache .ruff_cache
