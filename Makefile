# charlm developer entry points. Every target creates/updates .venv first, and is fast when it is current.
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
UI_PORT ?= 5000
# `make server`: a shared tracking server. Its SQL backend and artifact store live under
# SERVER_DIR unless SERVER_BACKEND / SERVER_ARTIFACTS name others (PostgreSQL, an object store).
SERVER_DIR ?= $(CURDIR)/mlflow-server
SERVER_BACKEND ?= sqlite:///$(SERVER_DIR)/mlflow.db
SERVER_ARTIFACTS ?= $(SERVER_DIR)/artifacts
SERVER_HOST ?= 127.0.0.1
SERVER_PORT ?= 5000
# Any other `mlflow server` options, e.g. --app-name basic-auth --allowed-hosts mlflow.example.com
SERVER_OPTS ?=
# `make bench-quality`: tiny shakespeare as a local path (default: the benchmark downloads it from
# its canonical URL, pinned by sha256), the training seconds each side gets, and the seeds.
CORPUS ?=
BUDGET ?= 300
SEEDS ?= 1
# `make serve`: the model to serve (default: params.yaml's champion) and the port; workers and
# torch threads per worker default to one worker per core, one thread each.
MODEL ?=
SERVE_PORT ?= 5001
SERVE_OPTS ?=

# Stage commands in dvc.yaml call `python`: make them find the project's environment.
export PATH := $(BIN):$(PATH)

.PHONY: setup run test test-fast lint format ui server serve bench bench-quality bench-data bench-serve clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,server]'
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
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff check --fix src stages tests benchmarks
	$(BIN)/ruff format src stages tests benchmarks

ui: setup  ## MLflow UI on the embedded database, local only; prints the address that opens on the runs
	$(BIN)/charlm ui --port $(UI_PORT)

server: setup  ## MLflow tracking server for a team (local only unless SERVER_HOST says otherwise)
	mkdir -p "$(SERVER_DIR)"
	$(BIN)/mlflow server --backend-store-uri "$(SERVER_BACKEND)" --artifacts-destination "$(SERVER_ARTIFACTS)" \
		--host $(SERVER_HOST) --port $(SERVER_PORT) --workers 1 $(SERVER_OPTS)

serve: setup  ## serve the champion on 127.0.0.1:$(SERVE_PORT), continuously batched, one worker per core
	$(BIN)/charlm serve $(if $(MODEL),--uri "$(MODEL)") --port $(SERVE_PORT) $(SERVE_OPTS)

bench: setup  ## training and sampling throughput (params.yaml's lstm), and the training step's variants A/B
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_step.py
	$(BIN)/python benchmarks/bench_sample.py

bench-quality: setup  ## held-out loss at equal training time, stateful, windowed and dynamic: charlm's Trainer against a plain LSTM loop
	$(BIN)/python benchmarks/bench_quality.py $(if $(CORPUS),--corpus "$(CORPUS)") --budget $(BUDGET) --seeds $(SEEDS)

bench-data: setup  ## fetch, prepare and vocab through dvc repro at 100 MB and 1 GB: seconds, MB/s, peak RSS
	$(BIN)/python benchmarks/bench_data.py

bench-serve: setup  ## the scoring server under 1, 8 and 32 clients, then one heavy client among light ones; the batching loop alone
	$(BIN)/python benchmarks/bench_serve.py $(if $(MODEL),--model "$(MODEL)")
	$(BIN)/python benchmarks/bench_batcher.py $(if $(MODEL),--model "$(MODEL)")

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
