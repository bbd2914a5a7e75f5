# Two entry points: `make demo` runs a real study, `make test` runs the whole test suite.
# Both create .venv with Python 3.11+ and install digitune into it first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "digitune needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: install
	$(BIN)/digitune run studies/quickstart.toml
	$(BIN)/digitune show quickstart

test: install
	$(BIN)/python -P -m pytest  # -P: the checkout is never on the path; tests import the installed digitune

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
