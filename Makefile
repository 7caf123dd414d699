# Two set-up commands for users: `make demo` and `make test`. Both start from `make install`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch==2.13.0 is the CPU build already on disk; any other version pulls GBs of CUDA wheels.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,lab,torch]"
	touch $(STAMP)

demo: install
	$(BIN)/python -m jupyter_serving.demo

test: install
	$(BIN)/ruff check jupyter_serving tests benchmarks
	$(BIN)/python -m pytest -p no:cacheprovider

lint: install
	$(BIN)/ruff check jupyter_serving tests benchmarks
	$(BIN)/ruff format --check jupyter_serving tests benchmarks

bench: install
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .demo .bench build dist
