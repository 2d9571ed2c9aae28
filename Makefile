# SmartOps: two commands for a fresh machine (Python 3.11+):
#   make demo   bring up the sandbox, inject a connection leak, run db-pool-exhausted headless
#   make test   the whole test suite (unit + scenario tests against real services, files in parallel)
#   make test-fast   the unit tests only (no services, under a minute)
# Each sets up its own virtual environment in .venv on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast venv clean-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@$(BIN)/smartops sandbox up
	@$(BIN)/smartops sandbox fault connection-leak
	@sleep 4   # let the leaked connections age past the demo's idle_minutes (0.05 min)
	@$(BIN)/smartops run db-pool-exhausted -f parameters/demo.yaml; status=$$?; \
	  echo "(the fault is still injected: 'smartops sandbox heal' repairs it, 'smartops sandbox down' stops all)" >&2; \
	  exit $$status

# each test file runs whole on one of TEST_WORKERS processes, each with its own sandbox and kernels
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -rs tests/unit

clean-demo:
	-$(BIN)/smartops sandbox down
