# contrastive: the front door. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
PROFILE ?= quick
TARGET ?= kubeflow
IMAGE ?=
REGISTRY ?=
# Without IMAGE, compile writes the placeholder image (components.DEFAULT_IMAGE), which submit refuses.
IMAGE_FLAG := $(if $(IMAGE),--image $(IMAGE))
GIT_SHA := $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
PYTEST_ARGS ?=
# pytest-xdist workers (0: one process); tests/conftest.py keeps each module's tests, and each
# shared session fixture's, on one worker. `make test` runs 3 on this 2-core machine: its
# end-to-end tests wait on child processes, and a third worker fills those gaps (TensorFlow
# pass 706 s against 750 s with 2, the same CPU seconds; docs/BENCHMARKS.md § 10). `make test-quick`
# is CPU-bound compiles: 2; so is the JAX pass (217.6 s on 2, 223.1 s on 3, back to back).
WORKERS ?= 3
QUICK_WORKERS ?= 2
JAX_WORKERS ?= 2
xdist = $(if $(filter-out 0,$(1)),-n $(1) --dist loadgroup,)
XDIST := $(call xdist,$(WORKERS))
# JAX's persistent compilation cache for the tests (the JAX pass, and the JAX children of the
# TensorFlow pass): every test builds a new Keras train step, so the same small programs are
# compiled again and again. From an empty cache (a fresh clone) the JAX pass took 155 s
# against 203 s without, back to back (docs/BENCHMARKS.md § 10). Kept in build/ between runs (the key
# holds the program, the flags and JAX's version); `make clean` empties it; JAX_CACHE= turns it off.
JAX_CACHE ?= build/jax-cache
JAX_CACHE_ENV = $(if $(JAX_CACHE),JAX_COMPILATION_CACHE_DIR=$(abspath $(JAX_CACHE)) \
	JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0)
# XLA compiles the tests' programs without LLVM's optimisations: each test runs a handful of
# steps of a program it compiled, so compiling dominates, and the tests check results, not
# speed. JAX pass 178 -> 134 s wall, 318 -> 232 CPU s (2026-12-07, docs/BENCHMARKS.md § 10). Added to
# any XLA_FLAGS of the caller's; TEST_XLA_FLAGS= turns it off. Runs, benchmarks and the
# pipeline never get it, nor does the ragged data-parallel check's child (tests/distributed:
# with it, its 1- and 8-device kNN accuracies differed by one near-tied validation image).
TEST_XLA_FLAGS ?= --xla_backend_optimization_level=0
TEST_ENV = $(JAX_CACHE_ENV) $(if $(strip $(XLA_FLAGS) $(TEST_XLA_FLAGS)),XLA_FLAGS="$(strip $(XLA_FLAGS) $(TEST_XLA_FLAGS))")
# The installer: uv (pinned in constraints.txt; 2.6x faster than pip on a fresh machine, the
# same versions; --compile-bytecode as pip: with PYTHONDONTWRITEBYTECODE set, every process
# would otherwise compile TensorFlow's source), or pip (INSTALLER=pip; also what uv's failure falls back to). uv reads no
# pip.conf: a private index is given as UV_ARGS="--index-url ..." (or UV_INDEX_URL),
# PIP_ARGS="--index-url ..." for pip and for installing uv itself.
INSTALLER ?= uv
PIP_ARGS ?=
UV_ARGS ?=
EXTRAS := .[tf,jax,dev,vertex,beam]

.PHONY: help install data run test test-quick test-fast lint format compile submit schedule \
        images bench bench-ingest bench-smoke clean tensorboard

help: ## List every target with one line each
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

# -qq: pip's errors only (a machine's pip configuration may add a warning per missing index).
# Debian and Ubuntu ship `venv`'s ensurepip in python3.X-venv: without it `python3 -m venv`
# fails half-way and leaves a .venv without pip; check first and say what to install.
$(STAMP): pyproject.toml constraints.txt
	@if ! $(BIN)/python -m pip --version >/dev/null 2>&1; then \
	  if ! command -v $(PYTHON) >/dev/null; then \
	    echo "error: $(PYTHON) not found: install Python 3.10 or newer (or make PYTHON=...)"; \
	    exit 2; \
	  fi; \
	  if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
	    version=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	    echo "error: $(PYTHON) cannot create a virtual environment: its venv module has no ensurepip."; \
	    echo "On Debian/Ubuntu: sudo apt-get install python3-venv (or python$$version-venv), then make again."; \
	    exit 2; \
	  fi; \
	  rm -rf $(VENV); \
	  $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 2; }; \
	fi
	@echo "installing the project into $(VENV) with $(INSTALLER) (errors only)"
	@if [ "$(INSTALLER)" = uv ] && $(BIN)/python -m pip install -qq $(PIP_ARGS) -c constraints.txt uv && \
	  $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python $(UV_ARGS) -c constraints.txt -e "$(EXTRAS)"; then :; \
	else \
	  if [ "$(INSTALLER)" = uv ]; then echo "uv failed (its error above): installing with pip"; fi; \
	  $(BIN)/python -m pip install -qq $(PIP_ARGS) --upgrade pip && \
	  $(BIN)/python -m pip install -qq $(PIP_ARGS) -c constraints.txt -e "$(EXTRAS)"; \
	fi
	@touch $(STAMP)

install: $(STAMP) data ## Create .venv, install the project (editable) and Fashion-MNIST

data: ## Install the embedded dataset (Debian package dataset-fashion-mnist) if missing
	@if [ -d $(FMNIST_DIR) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing dataset-fashion-mnist"; \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) ; \
	else \
	  echo "Fashion-MNIST not found in $(FMNIST_DIR)."; \
	  echo "Install it with: sudo apt-get install dataset-fashion-mnist"; \
	  echo "(or ingest another source: contrastive ingest --source tfds:fashion_mnist ...)"; \
	fi

run: install ## Run the whole pipeline locally (kfp.local), quick profile (ARGS="--no-cache -v")
	@$(BIN)/contrastive run --profile $(PROFILE) $(ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install lint ## Lint, the whole suite (TensorFlow backend), then library tests on JAX
	$(TEST_ENV) KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q $(XDIST) $(PYTEST_ARGS)
	$(TEST_ENV) KERAS_BACKEND=jax $(BIN)/python -m pytest -q -m backend $(call xdist,$(JAX_WORKERS)) $(PYTEST_ARGS)

test-quick: install ## The inner loop (< 2 min): tests that train nothing and start no process
	$(TEST_ENV) KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q -m "not slow" $(call xdist,$(QUICK_WORKERS)) $(PYTEST_ARGS)

test-fast: test-quick # its former name

RUN ?= latest
tensorboard: $(STAMP) ## TensorBoard on runs/RUN/tensorboard (RUN=latest by default, PORT=6006)
	$(BIN)/tensorboard --logdir runs/$(RUN)/tensorboard --host localhost --port $${PORT:-6006}

compile: $(STAMP) ## Write build/pipeline-kubeflow.yaml and build/pipeline-vertex.yaml
	@mkdir -p build
	$(BIN)/contrastive compile --target kubeflow $(IMAGE_FLAG) --output build/pipeline-kubeflow.yaml
	$(BIN)/contrastive compile --target vertex $(IMAGE_FLAG) --output build/pipeline-vertex.yaml

submit: compile ## Submit build/pipeline-$(TARGET).yaml (ARGS="--host ..." or "--project ...")
	$(BIN)/contrastive submit --target $(TARGET) --package build/pipeline-$(TARGET).yaml $(ARGS)

schedule: compile ## Schedule retraining (ARGS="--cron ... --schedule-name ...")
	$(BIN)/contrastive schedule --target $(TARGET) --package build/pipeline-$(TARGET).yaml $(ARGS)

images: ## Build and push REGISTRY/contrastive, contrastive-jax and contrastive-dataflow :<git sha>
	@test -n "$(REGISTRY)" || (echo "usage: make images REGISTRY=us-docker.pkg.dev/PROJECT/REPO" && exit 2)
	docker build -f images/Dockerfile -t $(REGISTRY)/contrastive:$(GIT_SHA) .
	docker push $(REGISTRY)/contrastive:$(GIT_SHA)
	docker build -f images/Dockerfile.jax -t $(REGISTRY)/contrastive-jax:$(GIT_SHA) .
	docker push $(REGISTRY)/contrastive-jax:$(GIT_SHA)
	docker build -f images/Dockerfile.dataflow --build-arg BASE=$(REGISTRY)/contrastive:$(GIT_SHA) \
	  -t $(REGISTRY)/contrastive-dataflow:$(GIT_SHA) images
	docker push $(REGISTRY)/contrastive-dataflow:$(GIT_SHA)
	@echo "now: make compile IMAGE=$(REGISTRY)/contrastive:$(GIT_SHA)"
	@echo "  (several GPUs: contrastive compile --backend jax --image $(REGISTRY)/contrastive-jax:$(GIT_SHA) ...)"

bench-ingest: install ## Ingest + read throughput on Fashion-MNIST (images/s)
	$(BIN)/python bench/bench_ingest.py

bench-smoke: install ## Each benchmark script's --help and --smoke run (not in make test)
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q bench/test_smoke.py $(PYTEST_ARGS)

bench: install bench-ingest ## All benchmarks (results in bench/results, docs/BENCHMARKS.md)
	$(BIN)/python bench/bench_speed.py
	$(BIN)/python bench/bench_quality.py

clean: ## Remove build outputs and local runs (keeps .venv)
	rm -rf build runs local_outputs .pytest_cache .ruff_cache
