# ShopBot: `make run` serves the demo shop, `make test` runs every test. Both set everything up.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export OPENBLAS_NUM_THREADS := 1

.PHONY: run test install train serve lint redis clean

run: install train serve

install: $(STAMP)

# torch is installed on its own, pinned, so pip never reaches for a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "ShopBot needs Python 3.11 ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: install
	$(VENV)/bin/shopbot train

serve: install
	$(VENV)/bin/shopbot serve

redis:
	@.ci/ensure-redis

test: install redis
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check bot nlu generation tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) models var reports .pytest_cache .mypy_cache .ruff_cache
