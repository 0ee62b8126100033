# Developer and CI entry points. `make test` is the README's test command; CI runs it via .ci/run.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
DEMO_ARGS ?=

.PHONY: venv test lint demo clean

venv: $(STAMP)

# Re-install only when the dependencies change. The editable install is pure Python, so an edited .py is what
# runs; `pip install .` and the Docker image compile operators/, the Avro reader and validation with mypyc (setup.py).
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -e '.[dev]'
	touch $@

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: venv
	$(VENV)/bin/demandsense demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
