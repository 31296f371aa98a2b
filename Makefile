# The README's two commands are `make demo` and `make test`; both set up first (idempotent).
.PHONY: setup demo lint test test-all

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/minielm demo

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: lint
	.venv/bin/python -m pytest -m "not gpu"

test-all: setup
	.venv/bin/python -m pytest
