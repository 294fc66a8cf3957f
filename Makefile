# charlm developer entry points. Every target creates/updates .venv first, and is fast when it is current.
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
UI_PORT ?= 5000

# Stage commands in dvc.yaml call `python`: make them find the project's environment.
export PATH := $(BIN):$(PATH)

.PHONY: setup run test test-fast lint format ui bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: setup  ## run the whole pipeline
	$(BIN)/charlm tracking
	$(BIN)/dvc repro

test: setup  ## the whole suite, slow end-to-end tests included
	$(BIN)/python -m pytest

test-fast: setup  ## unit tests only
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check src stages tests benchmarks
	$(BIN)/ruff format --check src stages tests benchmarks

format: setup
	$(BIN)/ruff check --fix src stages tests benchmarks
	$(BIN)/ruff format src stages tests benchmarks

ui: setup  ## MLflow UI on the embedded database, local only
	$(BIN)/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" --host 127.0.0.1 --port $(UI_PORT)

bench: setup  ## training and sampling throughput (params.yaml's lstm)
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_sample.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
