#!/usr/bin/env bash
# The test command README.md gives and CI runs. It sets the machine up, runs the fast tier as an
# unprivileged user with no Docker, then the real-fault tier on each Docker engine in turn: Debian 12's
# docker.io (20.10) and Debian unstable's (28.x, fetched and started by scripts/engine.sh), and leaves the
# machine on the stock engine again.
#
#   bash scripts/test.sh                          everything (what CI runs)
#   bash scripts/test.sh tests/test_dns.py -x     these pytest arguments, on each engine
#   NETDOCTOR_ENGINES=stock bash scripts/test.sh  the real-fault tier on one engine only
#
# Switching engines stops dockerd and flushes the host's iptables (each engine rebuilds its own rules):
# run this on a machine of its own, as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: run it as root (sudo bash scripts/test.sh): the tests build namespaces, containers and rules" >&2
  exit 1
fi
bash scripts/setup.sh

pytest_run() {  # pytest's exit code 5 (nothing collected) is a failure too
  local code=0
  "$@" || code=$?
  if [ "$code" -eq 5 ]; then
    echo "test.sh: pytest collected no tests: that is a failure" >&2
    return 1
  fi
  return "$code"
}

failed=0
if [ $# -eq 0 ]; then
  echo "== fast tier: no root, no Docker"
  pytest_run bash scripts/test-fast.sh || failed=1
  set -- --ignore=tests/fast
fi

running_engine() {  # "stock" when Debian 12's own dockerd runs
  local exe
  exe=$(readlink -f "/proc/$(pgrep -xo dockerd)/exe" 2>/dev/null || true)
  if [ "$exe" = "$(readlink -f /usr/sbin/dockerd)" ]; then echo stock; else echo other; fi
}
back_to_stock() { if [ "$(running_engine)" != stock ]; then bash scripts/engine.sh stock >/dev/null; fi; }
trap back_to_stock EXIT
for engine in ${NETDOCTOR_ENGINES:-stock 28}; do
  if [ "$engine" != stock ] || [ "$(running_engine)" != stock ]; then
    bash scripts/engine.sh "$engine"
  fi
  bash scripts/build-test-image.sh >/dev/null  # each engine keeps its own images
  echo "== real-fault tier on Docker $(docker version --format '{{.Server.Version}}')"
  pytest_run .venv/bin/python -m pytest "$@" || failed=1
done
exit "$failed"
