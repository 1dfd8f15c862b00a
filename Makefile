# Two entry points: `make demo` (set up + run the Dagster demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
# CPU torch by default; on a GPU machine: make demo TORCH_SPEC="torch"
TORCH_SPEC ?= torch==2.13.0
DEMO ?= .demo
BIN := $(VENV)/bin
# The demo edits a doc every 90 s; changes must be embedded within 6 minutes (alerts WARN at
# 3 minutes); the GPU budget is small so the policy batches instead of re-embedding at once.
DEMO_ENV := DAGSTER_HOME=$(abspath $(DEMO))/dagster_home \
	FRESHNESS_SOURCE_PATH=$(abspath $(DEMO))/corpus \
	FRESHNESS_STATE_ROOT=$(abspath $(DEMO))/state \
	FRESHNESS_INDEX_PATH=$(abspath $(DEMO))/qdrant \
	FRESHNESS_REQUEST_LOGS_PATH=$(abspath $(DEMO))/logs/{date}.jsonl \
	FRESHNESS_METRICS_TEXTFILE=$(abspath $(DEMO))/freshness.prom \
	FRESHNESS_DEMO_CHURN_SECONDS=90 \
	FRESHNESS_MAX_STALENESS_HOURS=0.1 \
	FRESHNESS_BUDGET_GPU_SECONDS_PER_DAY=30 \
	HF_HUB_OFFLINE=1

.PHONY: install demo test lint clean-demo

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

$(DEMO)/corpus: | $(BIN)/.installed
	$(BIN)/freshness demo-corpus $(DEMO)/corpus

demo: install $(DEMO)/corpus
	mkdir -p $(DEMO)/dagster_home
	cp instance/dagster.yaml $(DEMO)/dagster_home/dagster.yaml
	@echo "Dagster UI on http://127.0.0.1:3000 — edit files under $(DEMO)/corpus and watch the sensor."
	$(DEMO_ENV) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# two workers (the 2-core machines it is sized for), each test file on one worker (module
# fixtures start once): about 8 minutes instead of 12 in one process
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(BIN)/ruff check .

clean-demo:
	rm -rf $(DEMO)
