# One entry point for people and CI. `make demo` and `make test` each set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
DATA ?= ../shared/data

# Offline by design: tests and the demo never reach a model or dataset hub.
# OMP_NUM_THREADS=1: with OpenMP busy-waiting, small-core CPU training runs several times slower.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test demo clean

setup: $(VENV)/.installed

# The constraints file pins every package; torch 2.13.0 there is the CPU build on this kind of machine.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

test: setup
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/xstilts demo --data-dir $(DATA)

clean:
	rm -rf $(VENV) .pytest_cache
