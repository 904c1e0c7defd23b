#!/usr/bin/env bash
# Install everything the tests need into .venv, then lint, type-check and run the whole suite.
# PostgreSQL store tests skip when no server is on 127.0.0.1:5432, except under CI=true,
# where they fail instead (CI must run them).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

echo "== ruff"
.venv/bin/ruff check sluicegate tests bench
echo "== mypy --strict"
.venv/bin/mypy sluicegate
echo "== pytest"
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
