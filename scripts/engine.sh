#!/usr/bin/env bash
# Switch this machine's Docker engine between Debian 12's docker.io (20.10) and Debian unstable's
# docker.io (28.x), so the suite runs on both in CI (same approach as ../shared/tools/engine.sh).
#
#   engine.sh fetch     download and unpack unstable's docker.io + containerd once (idempotent);
#                       prints the directory holding dockerd, containerd, docker-proxy and runc
#   engine.sh 28        fetch, then stop the running engine and start dockerd 28.x with its containerd 2.x
#   engine.sh stock     stop the running engine and start Debian 12's dockerd 20.10 again
#   engine.sh version   the running engine's version
#
# The .debs are extracted into $ENGINE_DIR/28 (default /opt/docker-engines/28), never installed: apt's
# own state is untouched. Unstable's runc needs a newer glibc than Debian 12 has, so Debian 12's runc is
# used with both engines. Each engine keeps its own data root (images must be imported again after a
# switch). Switching stops the running dockerd and flushes the host's iptables (both engines rebuild their
# own rules): only for a machine of its own, such as CI's. tests/engines.py runs the same binaries inside a
# network namespace instead, which touches nothing of the host's.
set -euo pipefail
W=${ENGINE_DIR:-/opt/docker-engines}
R=$W/28/root
B=$W/28/bin

fetch_28() {
  command -v runc >/dev/null || { apt-get update -qq && apt-get install -y -qq runc >/dev/null; }
  if [ ! -x "$R/usr/sbin/dockerd" ]; then
    mkdir -p "$W/28/debs" "$W/28/lists/partial"
    # the unstable suite from the same mirror this machine's apt already uses
    local uri
    uri=$({ grep -hoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } \
          | grep -v security | head -1 | awk '{print $2}')
    [ -n "$uri" ] || { echo "engine.sh: no Debian mirror found in /etc/apt/sources.list*" >&2; exit 1; }
    echo "deb $uri sid main" > "$W/28/sources.list"
    local o=(-o "Dir::Etc::sourcelist=$W/28/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$W/28/lists"
             -o APT::Get::List-Cleanup=0)
    apt-get "${o[@]}" update -qq
    (cd "$W/28/debs" && apt-get "${o[@]}" download docker.io containerd tini)
    for f in "$W"/28/debs/*.deb; do dpkg -x "$f" "$R"; done
  fi
  # one directory to put first on PATH: dockerd finds containerd, the shim, docker-proxy and runc there
  # (not docker-init: unstable's points at a tini-static that is not in the tini package; only --init needs it)
  mkdir -p "$B"
  rm -f "$B/docker-init"
  for x in usr/sbin/dockerd usr/sbin/docker-proxy usr/bin/containerd usr/bin/containerd-shim-runc-v2; do
    ln -sf "$R/$x" "$B/"
  done
  ln -sf "$(command -v runc)" "$B/runc"
}

stop_engine() {
  for p in $(pgrep -x dockerd || true); do kill "$p"; done
  for _ in $(seq 40); do pgrep -x dockerd >/dev/null || break; sleep 0.5; done
  for p in $(pgrep -f "^$B/containerd " || true); do kill "$p"; done
  for t in filter nat mangle raw; do iptables -t $t -F; iptables -t $t -X; done
  iptables -P FORWARD ACCEPT
  for b in $(ip -o link show type bridge | awk -F': ' '{print $2}' | grep -E '^(docker0|br-)' || true); do
    ip link del "$b"
  done
}

wait_engine() {
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker version --format 'engine {{.Server.Version}}'
}

case ${1:-} in
  fetch)
    fetch_28
    echo "$B"
    ;;
  28)
    fetch_28
    stop_engine
    mkdir -p /run/containerd-28
    (PATH=$B:$PATH setsid "$B/containerd" --address /run/containerd-28/containerd.sock --root /var/lib/containerd-28 \
       --state /run/containerd-28/state >/var/log/containerd-28.log 2>&1 &)
    for _ in $(seq 20); do [ -S /run/containerd-28/containerd.sock ] && break; sleep 0.5; done
    (PATH=$B:$PATH setsid "$B/dockerd" --containerd /run/containerd-28/containerd.sock --data-root /var/lib/docker-28 \
       >/var/log/dockerd-28.log 2>&1 &)
    wait_engine
    ;;
  stock)
    stop_engine
    (setsid dockerd >/var/log/dockerd.log 2>&1 &)
    wait_engine
    ;;
  version)
    docker version --format '{{.Server.Version}}'
    ;;
  *)
    echo "usage: $0 fetch|28|stock|version" >&2
    exit 2
    ;;
esac
