# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test bench ui loadtest clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/sagepipe run configs/fraud-detection.yaml

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

loadtest: $(STAMP)
	$(BIN)/python loadtest/run.py

ui: $(STAMP)
	$(BIN)/sagepipe ui

bench: $(STAMP)
	$(BIN)/python benchmarks/runner_overhead.py
	$(BIN)/python benchmarks/pipeline_speed.py
	$(BIN)/python benchmarks/compile_speed.py
	$(BIN)/python benchmarks/serving_speed.py
	$(BIN)/python benchmarks/transform_memory.py
	$(BIN)/python benchmarks/ddp_throughput.py
	$(BIN)/python benchmarks/emulate_overhead.py
	$(BIN)/python benchmarks/tuning_speed.py
	$(BIN)/python benchmarks/chaos.py

clean:
	rm -rf .sagepipe benchmarks/results
