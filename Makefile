# Set-up is automatic: every target below first builds .venv from pyproject.toml (pinned).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NAME   ?= kd-quant
SET    ?=
PORT   ?= 8080
SET_FLAGS := $(foreach s,$(SET),--set $(s))
# The local Hub's dev token (not a secret): writes to the embedded Hub need it.
export LOCALHUB_TOKEN ?= hf_localhub_dev_token
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install recipe check list test lint format hub clean-outputs bench bench-readme

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

# Runs recipe NAME. Without HF_ENDPOINT, the embedded local Hub is started, seeded and
# stopped around the run; with HF_ENDPOINT set (and HF_TOKEN), that Hub is used as is.
recipe: $(STAMP)
	@if [ -n "$$HF_ENDPOINT" ]; then \
		$(PY) -m recipes run $(NAME) $(SET_FLAGS); \
	else \
		$(PY) -m hubtools hub exec -- $(PY) -m recipes run $(NAME) $(SET_FLAGS); \
	fi

# The whole catalog in one comparison: runs every recipe not yet finished (cached stages reused),
# then measures every published model, the teacher, the floor and the peer in one process, in
# interleaved rounds (outputs/bench/: results.json, table.md, accuracy_vs_latency.png), and writes
# README's results section from it. SET: plan-wide overrides (dataset.*, models.*, seed);
# BENCH: more flags, e.g. BENCH="--rounds 7 --threads 1" or BENCH="--catalog my-catalog/".
BENCH ?=
bench: $(STAMP)
	@if [ -n "$$HF_ENDPOINT" ]; then \
		$(PY) -m recipes bench $(SET_FLAGS) $(BENCH); \
	else \
		$(PY) -m hubtools hub exec -- $(PY) -m recipes bench $(SET_FLAGS) $(BENCH); \
	fi
	$(PY) -m recipes bench --readme

# README's results section from outputs/bench/results.json again (no measuring).
bench-readme: $(STAMP)
	$(PY) -m recipes bench --readme

# Validates every catalog recipe against its data and models (schemas and configs only), on the
# embedded Hub unless HF_ENDPOINT names one.
check: $(STAMP)
	@if [ -n "$$HF_ENDPOINT" ]; then \
		$(PY) -m recipes check --all; \
	else \
		$(PY) -m hubtools hub exec -- $(PY) -m recipes check --all; \
	fi

list: $(STAMP)
	$(PY) -m recipes list

test: $(STAMP)
	$(PY) -m pytest

# ruff check + ruff format --check over the repo (settings in pyproject.toml); `make format` fixes.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The local Hub in the foreground on 127.0.0.1:$(PORT), seeded first (idempotent).
hub: $(STAMP)
	$(PY) -m hubtools hub seed
	$(PY) -m hubtools hub serve --port $(PORT)

clean-outputs:
	rm -rf outputs
