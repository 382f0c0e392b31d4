# reelserve: two commands for a new user, `make demo` and `make test`; the rest are parts of them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.reelserve-installed
SERVE_VENV ?= .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.reelserve-installed
REPO := model_repository

.PHONY: help install serve-env export export-gpu gpu-check soak demo test test-all lint serve clean bench bench-client loadtest

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml Makefile deploy/container/install.sh
	@# The CPU torch wheel first, pinned: nothing later may pull a multi-GB CUDA build (install.sh checks).
	PYTHON=$(PYTHON) bash deploy/container/install.sh python $(VENV) build
	touch $(STAMP)

# What the container image runs (serving extras only, no torch), with this checkout's code: the
# tests start `reelserve serve` from it exactly as the Kubernetes Deployment does.
$(SERVE_STAMP): pyproject.toml Makefile deploy/container/install.sh
	PYTHON=$(PYTHON) bash deploy/container/install.sh python $(SERVE_VENV) serve --editable
	touch $(SERVE_STAMP)

install: $(STAMP)  ## create .venv with everything (CPU torch, tritonserver, ONNX Runtime)

serve-env: $(SERVE_STAMP)  ## create .venv-serve: the container image's environment (no torch)

export: install  ## build the model repository (reused when nothing changed)
	$(VENV)/bin/reelserve export --target cpu --out $(REPO)

demo: export  ## install, export, serve, send real short videos, print their features
	$(VENV)/bin/reelserve demo --model-repository $(REPO)

test: export lint serve-env  ## unit + integration tests against a real tritonserver (the slow sweeps excluded)
	$(PY) -m pytest

test-all: export  ## also the slow kernel sweeps (long in Triton's interpreter)
	$(PY) -m pytest -m "slow or not slow"

lint: install  ## ruff
	$(VENV)/bin/ruff check .

export-gpu: export  ## GPU target without a GPU: plugin ONNX graphs, CPU parity, GPU repository configs in gpu-out/
	$(VENV)/bin/reelserve export --target gpu --onnx-only --out gpu-out

# On a GPU machine, in an environment with a CUDA torch and TensorRT (pip install -e '.[gpu,dev]'),
# not the CPU-only .venv that `make install` builds.
gpu-check:  ## GPU machine: kernel + engine tests, every engine, parity, TensorRT vs eager vs compile
	$(PYTHON) -m pytest -m "slow or not slow" tests/kernels tests/export/test_tensorrt_gpu.py
	$(PYTHON) -m reelserve.cli gpu-check --out gpu-out

bench: export  ## reelserve vs a naive torch-eager HTTP server vs a no-op ensemble, same cores (table + report)
	$(PY) -m reelserve.loadtests.bench --model-repository $(REPO) --out bench-report

loadtest: export  ## open-loop Poisson load on a local server; report in loadtest-report/
	$(VENV)/bin/reelserve loadtest --model-repository $(REPO) --out loadtest-report

soak: export  ## bounded soak on loopback (3 min): throughput, errors, server RSS per window; fails if memory grows
	$(PY) -m reelserve.loadtests.soak --model-repository $(REPO) --out soak-report

bench-client: export  ## the client SDK's overhead per call vs raw tritonclient (prints a table)
	$(PY) -m reelserve.loadtests.client_overhead --model-repository $(REPO)

serve: export  ## 2 tritonserver replicas behind the nginx front door on 127.0.0.1:8001 (gRPC) until Ctrl-C
	$(VENV)/bin/reelserve serve --model-repository $(REPO)

clean:  ## remove generated artifacts (keeps .venv)
	git clean -fdX $(REPO)
