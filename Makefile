# The two set-up commands of the README:
#   make demo   install into .venv and run the end-to-end example on the embedded default
#   make test   install into .venv and run the whole test suite (what .ci/run calls)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# constraints.txt pins torch to the CPU build that lies on local disk (an unpinned torch would pull a
# multi-GB CUDA build) and caps boto3 so pip's resolver does not backtrack for minutes.
CONSTRAINTS := constraints.txt

.PHONY: install demo test lint bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) torch -e ".[dev,executorch,onnx]"
	touch $@

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The suite runs on every core, at most 4 (pytest-xdist): each worker starts Celery workers, API servers
# and sandboxes of its own, and a test file stays on one worker, so a module's fixtures are built once.
# TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= auto

test: install lint
	$(BIN)/pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile

bench: install
	$(BIN)/python benchmarks/cli_latency.py
	$(BIN)/python benchmarks/registry_scale.py
	$(BIN)/python benchmarks/service.py
	$(BIN)/python benchmarks/pages.py
	$(BIN)/python benchmarks/aoti.py  # compiles two AOTInductor packages: a few minutes
	$(BIN)/python benchmarks/formats.py  # every format against eager, two models: about 3 minutes
	$(BIN)/python benchmarks/end_to_end.py  # BERT-base and BERT-large, 3 rounds of each side: about 20 minutes on 2 cores
