# ShopBot: `make run` serves the demo shop, `make test` runs every test. Both set everything up
# (`make test` also starts redis-server and installs Debian's Chromium for the browser tests when missing).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export OPENBLAS_NUM_THREADS := 1

.PHONY: run test install train serve demo-operator lint redis chromium screenshots clean

run: install train demo-operator serve

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

# The demo shop's operator account, made once (change the password with `shopbot operators add demo`).
demo-operator: install
	@test -f var/operators.json || echo "juniper-demo-password" | \
		$(VENV)/bin/shopbot operators add demo --display-name "Demo operator"

redis:
	@.ci/ensure-redis

chromium:
	@.ci/ensure-chromium

test: install redis chromium
	$(PY) -m pytest

screenshots: install redis chromium  # refresh docs/*.png from the browser tests
	SHOPBOT_UPDATE_SCREENSHOTS=1 $(PY) -m pytest tests/browser -q

lint: install
	$(VENV)/bin/ruff check bot nlu generation tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) models var reports .pytest_cache .mypy_cache .ruff_cache
