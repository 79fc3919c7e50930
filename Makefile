# The two commands a fresh machine needs: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed

.PHONY: run test install lock lint typecheck bench clean demo

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@test -x $(UV) || $(BIN)/python -m pip install -q uv==0.13.8
	VIRTUAL_ENV=$(VENV) $(UV) pip sync -q requirements.lock
	VIRTUAL_ENV=$(VENV) $(UV) pip install -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## create the venv and install exactly the locked versions

lock: ## re-resolve requirements.lock from pyproject.toml
	$(UV) pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

run: install ## start the embedded database, migrate, load the demo, start the app on 127.0.0.1:8501
	$(BIN)/salesarck db upgrade
	$(BIN)/salesarck demo seed
	$(BIN)/salesarck demo serve

test: install ## lint, type-check, then the whole suite on a real PostgreSQL
	$(BIN)/ruff check salesarck tests bench migrations app.py pages
	$(BIN)/mypy salesarck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .pytest-pg .pytest_cache .mypy_cache .ruff_cache
