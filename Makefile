# The README's two commands are `make demo` and `make test`; both set up first (idempotent).
.PHONY: setup demo lint test test-all

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/minielm demo

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# pytest exits 5 when it collects no tests: reported, not a failure (make itself would turn it into 2).
test: lint
	.venv/bin/python -m pytest -m "not gpu"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)" >&2; rc=0; fi; exit $$rc

test-all: setup
	.venv/bin/python -m pytest
