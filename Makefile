# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: setup run test bench ui loadtest clean

# Everything (requirements.lock): every extra, torch and the test tools; `make test` and CI use it.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.lock
	$(PIP) --no-deps -e .
	touch $(STAMP) $(RUN_STAMP)

# What the LightGBM example needs (requirements/run.lock: the core, ml, tracking, serve), no more.
$(RUN_STAMP): requirements/run.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements/run.lock
	$(PIP) --no-deps -e .
	touch $(RUN_STAMP)

setup: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/sagepipe run configs/fraud-detection.yaml

# Two processes (pytest-xdist) by test module: a module's shared fixtures are built once, in one worker.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

loadtest: $(STAMP)
	$(BIN)/python loadtest/run.py

ui: $(RUN_STAMP)
	$(BIN)/sagepipe ui

bench: $(STAMP)
	$(BIN)/python benchmarks/runner_overhead.py
	$(BIN)/python benchmarks/pipeline_speed.py
	$(BIN)/python benchmarks/compile_speed.py
	$(BIN)/python benchmarks/serving_speed.py
	$(BIN)/python benchmarks/serving_connections.py
	$(BIN)/python benchmarks/serving_capture.py
	$(BIN)/python benchmarks/transform_memory.py
	$(BIN)/python benchmarks/ddp_throughput.py
	$(BIN)/python benchmarks/emulate_overhead.py
	$(BIN)/python benchmarks/tuning_speed.py
	$(BIN)/python benchmarks/tracking_latency.py
	$(BIN)/python benchmarks/scale.py
	-$(BIN)/python benchmarks/chaos.py
	$(BIN)/python benchmarks/summary.py

clean:
	rm -rf .sagepipe benchmarks/results
