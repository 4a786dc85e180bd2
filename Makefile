# trendgen: `make demo` runs the offline demo end to end, `make test` runs the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean-demo

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch that lies on this machine's disk; a bare `torch` requirement pulls a CUDA build.
	# --no-compile: a module is compiled when a run first imports it, not every module installed (a clean
	# install in 30 s against 67 s); `make test` lets Python keep what it compiles (PYTHONDONTWRITEBYTECODE).
	$(PY) -m pip install -q --no-compile torch==2.13.0 || $(PY) -m pip install -q --no-compile torch
	$(PY) -m pip install -q --no-compile -e '.[dev]'
	# open_clip's SigLipLoss is the sigmoid loss's reference in the tests; without its dependencies, since
	# its package imports torchvision, whose wheel breaks beside this torch (the test loads loss.py alone).
	$(PY) -m pip install -q --no-compile --no-deps open_clip_torch==3.3.0
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

# Two pytest-xdist workers, one thread each; each test module goes to one worker whole, the longest first
# (tests/conftest.py), and the apps the tests run start warm (tests/helpers/apps.py).
test: install
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest -m "not slow" -n 2 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

# bench_peers.py needs the peers' own environments (docs/BENCHMARKS.md): run it by hand.
bench: install
	for b in scripts/bench_*.py; do [ $$b = scripts/bench_peers.py ] || $(PY) $$b || exit 1; done
