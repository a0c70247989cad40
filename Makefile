# Two commands on a fresh clone: `make run` (set up, then the main job) and `make test` (set up, then the fast tests).
#
#   make run        venv + torch + the project, then the main job (6 cells, about 14 minutes on 2 CPU cores)
#   make test       the fast test tier (everything not marked slow or integration; a few minutes on 2 cores)
#   make test-all   every test, as CI runs them (about 10 minutes on 2 idle cores)
#   make regress    the regression gate (bench regress, about 4 minutes)
#
# torch is installed before the project, as PyTorch's instructions do: from its CPU index on a machine without
# nvidia-smi, from PyPI (the CUDA build) where there is one; `make setup TORCH_INDEX=URL` picks another index and
# an existing venv keeps the torch it has. When ../shared/hf-hub exists (this project's machines and CI), the Hub
# variables point at it and the Hugging Face libraries run offline; elsewhere they use the Hub.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)
HUB_CACHE ?= $(abspath ../shared/hf-hub)
OUTPUT ?= results/quick

BIN := $(VENV)/bin
HUB_ENV := $(if $(wildcard $(HUB_CACHE)),HF_HUB_CACHE=$(HUB_CACHE) HF_HUB_OFFLINE=1,)
# What the main job reads from the Hub: the model and the datasets of its two tasks.
NEEDS := sentence-transformers/all-MiniLM-L6-v2 nyu-mll/glue rajpurkar/squad

.PHONY: setup run test test-all regress check-hub clean-venv

setup: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null \
	  || $(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev,onnx]"
	touch $@

# Fails, naming the repo, when the Hub cache is in use and lacks something the main job reads.
check-hub:
	@if [ -n "$(HUB_ENV)" ]; then \
	  for repo in $(NEEDS); do \
	    kind=models; case $$repo in nyu-mll/*|rajpurkar/*) kind=datasets;; esac; \
	    dir="$(HUB_CACHE)/$$kind--$$(echo $$repo | sed 's|/|--|g')"; \
	    [ -d "$$dir/snapshots" ] || { echo "make: the Hub cache $(HUB_CACHE) lacks $$repo ($$dir)" >&2; exit 2; }; \
	  done; \
	fi

run: setup check-hub
	$(HUB_ENV) $(BIN)/bench run --methods dense,magnitude,movement --tasks mnli,squad --sparsities 0.9 \
	  --preset quick --output $(OUTPUT)

test: setup
	$(HUB_ENV) MPLBACKEND=Agg $(BIN)/python -m pytest -q -rs -m "not slow and not integration"

test-all: setup
	$(HUB_ENV) MPLBACKEND=Agg $(BIN)/python -m pytest -q -rs

regress: setup
	$(HUB_ENV) $(BIN)/bench regress

clean-venv:
	rm -rf $(VENV)
