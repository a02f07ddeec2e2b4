#!/usr/bin/env bash
# The first command on a fresh machine: set it up (packages, Docker, test image, virtualenv), then let
# netdoctor build a few real network faults, diagnose them, and remove them again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run it as root (sudo bash scripts/demo.sh): the lab creates namespaces and containers" >&2
  exit 1
fi
bash scripts/setup.sh
exec .venv/bin/netdoctor demo "$@"
