#!/usr/bin/env bash
# The test command README.md gives and CI runs: set the machine up, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: run it as root (sudo bash scripts/test.sh): the tests build namespaces, containers and rules" >&2
  exit 1
fi
bash scripts/setup.sh
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$code"
