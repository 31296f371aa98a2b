#!/usr/bin/env bash
# Set up everything MiniELM needs on a fresh machine: a Python 3.11 venv with the pinned
# packages (constraints.txt) and the offline assets. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

stamp=.venv/.minielm-install-stamp
want=$(cat constraints.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing MiniELM into .venv (pinned by constraints.txt; about 3 minutes the first time)"
  start=$(date +%s)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3"
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -c constraints.txt -e '.[dev]' \
    | grep -vE "^(Requirement already satisfied|WARNING: Location)" || true
  .venv/bin/python -m pip check
  echo "$want" > "$stamp"
  echo "== installed in $(( $(date +%s) - start )) s; venv size $(du -sh .venv | cut -f1)"
fi
