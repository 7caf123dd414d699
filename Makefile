# Two set-up commands for users: `make demo` and `make test`. Both start from `make install`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JLPM = PATH="$(abspath $(BIN)):$$PATH" "$(abspath $(BIN))/jlpm"

.PHONY: install demo test lint bench clean labextension browser

install: $(STAMP)

$(STAMP): pyproject.toml Makefile labextension/package.json labextension/yarn.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch==2.13.0 is the CPU build already on disk; any other version pulls GBs of CUDA wheels.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,lab,torch,flavors,ray]" torch==2.13.0
	$(MAKE) labextension
	touch $(STAMP)

# The JupyterLab panel (labextension/, TypeScript) built into jupyter_serving/labextension and linked into
# the venv, plus the browser-test driver. Needs Node.js >= 20; without it everything else installs and
# runs, and the browser tests skip. jlpm and jupyter-builder come from the venv (the lab extra).
labextension:
	@if command -v node >/dev/null 2>&1; then \
	  set -e; \
	  (cd labextension && $(JLPM) install && $(JLPM) build); \
	  $(BIN)/jupyter-builder develop --overwrite .; \
	  (cd tests/ui && npm ci --no-audit --no-fund); \
	else \
	  echo "Node.js not found: skipping the JupyterLab panel; the browser tests will skip."; \
	fi

# Headless Chromium for the panel's browser tests: Debian's package, where apt is usable.
browser:
	@if command -v chromium >/dev/null 2>&1 || [ -n "$$CHROMIUM_PATH" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "No chromium and no apt: the browser tests will skip."; fi

demo: install
	$(BIN)/python -m jupyter_serving.demo

test: install browser
	$(BIN)/ruff check jupyter_serving tests benchmarks
	# Types, as configured in pyproject.toml ([tool.mypy]; docs/ARCHITECTURE.md "Types"); cached in .mypy_cache.
	$(BIN)/mypy
	@if command -v node >/dev/null 2>&1; then cd labextension && $(JLPM) test; fi
	# Two workers, one test file each at a time: most of a test waits on subprocesses and timers.
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadfile --durations=15

lint: install
	$(BIN)/ruff check jupyter_serving tests benchmarks
	$(BIN)/ruff format --check jupyter_serving tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .demo .bench build dist jupyter_serving/labextension labextension/node_modules labextension/lib
