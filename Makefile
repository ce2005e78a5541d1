# The two commands of the README: `make demo` and `make test`. Both set up .venv first (idempotent).
SHELL := /bin/bash
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
PARTS ?= 5
RATE ?= 20
CELL ?= config/demo_cell.yaml

.PHONY: venv demo test lint bench clean
venv:
	@scripts/bootstrap.sh

demo: venv
	.venv/bin/cobot-cell demo $(CELL) --parts $(PARTS) --rate $(RATE)

test: venv
	.venv/bin/python -m pytest

# ruff (lint + import order) and mypy (strict on the pure layers); settings in pyproject.toml
lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

bench: venv
	.venv/bin/python bench/run_all

clean:
	rm -rf .venv build install log .pytest_cache
