# Two commands for a newcomer: `make demo` (the main job) and `make test` (the suite).
# Both create/reuse the virtual environment $(VENV), keep a torch already installed there, and
# otherwise install CPU torch first (a bare `pip install torch` pulls a multi-GB CUDA build).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pl-pac-trs-installed

.PHONY: venv demo test lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)" \
		|| $(PY) -m pip install -q torch --index-url $(TORCH_CPU_INDEX)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pl_pac_trs.demo

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf runs demo_runs .pytest_cache .ruff_cache
