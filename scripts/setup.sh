#!/usr/bin/env bash
# Make a fresh Debian 12 machine ready for netdoctor's demo and tests: system packages, a running
# Docker engine, the busybox test image and a virtualenv with netdoctor installed. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

packages=(docker.io iptables nftables iproute2 busybox-static ethtool tmux debootstrap python3-venv)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd"
  (setsid dockerd >/var/log/dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see /var/log/dockerd.log" >&2; tail -20 /var/log/dockerd.log >&2; exit 1; }
fi

bash scripts/build-test-image.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# (this machine's pip config names a local index that may be absent: drop that one warning, keep failures)
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2> >(grep -v "^WARNING: Location" >&2)
.venv/bin/python -c "import netdoctor.cli"  # the install worked
# `netdoctor` on PATH, as the commands netdoctor prints assume; never over a netdoctor installed otherwise
if [ ! -e /usr/local/bin/netdoctor ] || [ -L /usr/local/bin/netdoctor ]; then
  ln -sfn "$PWD/.venv/bin/netdoctor" /usr/local/bin/netdoctor
fi
