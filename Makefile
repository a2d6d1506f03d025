# The README's two commands are `make serve` and `make test`; everything else is a helper.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Every install takes the versions the test suite ran against (deploy/freeze_constraints.py).
CONSTRAINTS := constraints.txt
PIP_INSTALL := $(BIN)/python -m pip install -q -c $(CONSTRAINTS)
# torch comes from PyTorch's CPU index unless an NVIDIA GPU answers (then PyPI's CUDA build);
# `make install TORCH_INDEX=https://download.pytorch.org/whl/cu130` picks a CUDA build.
TORCH_INDEX ?= $(if $(shell nvidia-smi -L 2>/dev/null),,https://download.pytorch.org/whl/cpu)

.PHONY: serve test lint install install-serve constraints clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch alone first (its own dependencies come from PyPI with the extras below), so the
# extras find it satisfied and never pull a multi-gigabyte CUDA build onto a CPU machine.
$(VENV)/.torch: $(CONSTRAINTS) | $(BIN)/python
	$(PIP_INSTALL) --no-deps $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch
	touch $@

# Serving and the demo (which trains the five models on synthetic data): no batch, dev or
# bench extras.
$(VENV)/.installed-serve: pyproject.toml $(CONSTRAINTS) $(VENV)/.torch
	$(PIP_INSTALL) -e '.[train]'
	touch $@

# The test suite: bulk scoring (Dask) and the dev tools too.
$(VENV)/.installed-test: pyproject.toml $(CONSTRAINTS) $(VENV)/.torch
	$(PIP_INSTALL) -e '.[train,batch,dev]'
	touch $@

install-serve: $(VENV)/.installed-serve

install: $(VENV)/.installed-test

# Installs, trains the demo models if artifacts/ has none, starts an embedded Valkey
# (unless REDIS_URL is set) and serves on port 8000.
serve: $(VENV)/.installed-serve
	$(BIN)/salecast serve --demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy --strict service && $(BIN)/mypy models training bench tests

# Re-pins constraints.txt to what this virtual environment has installed.
constraints: $(VENV)/.installed-test
	$(BIN)/python deploy/freeze_constraints.py > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) var artifacts
