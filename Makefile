# The two commands of the README. Both build the virtualenv they need from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
DEMO_PORT ?= 8001

# mkdocs-material prints an end-of-life banner on every build; noted in the README instead.
export NO_MKDOCS_2_WARNING := 1

.PHONY: serve test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]' --group test
	touch $(STAMP)

## serve: the site on http://$(HOST):$(PORT), reloading on changes to docs/, examples/ and src/,
## with the live demo's server (Flask API + stream service on the embedded fakeredis) beside it
serve: $(STAMP)
	@REDIS_URL=memory:// DEMO_PORT=$(DEMO_PORT) \
	  DEMO_ORIGINS=http://$(HOST):$(PORT),http://localhost:$(PORT) \
	  $(BIN)/python examples/live_demo/demo.py & demo=$$!; \
	  trap 'kill $$demo 2>/dev/null; wait $$demo 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/mkdocs serve --dev-addr $(HOST):$(PORT)

## test: the whole suite (fakeredis always; real Redis and Chromium when they are there)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
