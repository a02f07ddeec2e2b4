#!/usr/bin/env bash
# Build the netdoctor container image without pulling anything from a registry.
#
#   bash scripts/build-image.sh [IMAGE]          (default IMAGE: netdoctor:latest)
#
# Users with registry access just run `docker build -t netdoctor .` (FROM python:3.12-slim). Where no
# registry is reachable (CI here), this script first makes the base image the Dockerfile expects:
#   1. a Debian bookworm rootfs from debootstrap, pointed at the apt mirror this machine already uses,
#      imported as $ROOTFS_IMAGE;
#   2. that plus python3 and python3-venv from Debian and this machine's local CA certificates,
#      tagged $BASE_IMAGE;
# then builds the Dockerfile with --build-arg BASE=$BASE_IMAGE. Both base images are kept, so a rerun
# only rebuilds the netdoctor layers that changed (Docker's layer cache).
#
# Environment: DEBIAN_MIRROR (default: the first Debian URI in /etc/apt/sources.list*),
# PIP_INDEX_URL / PIP_EXTRA_INDEX_URL (default: pip's own configuration on this machine, http(s) only),
# NETDOCTOR_REBUILD_BASE=1 to rebuild the bases.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${1:-netdoctor:latest}
SUITE=bookworm
ROOTFS_IMAGE=netdoctor-base/debian:$SUITE
BASE_IMAGE=netdoctor-base/python:$SUITE

log() { echo "build-image: $*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
# Run a noisy command; show its output only when it fails.
quietly() {
  local out
  out=$(mktemp)
  if ! "$@" >"$out" 2>&1; then tail -n 40 "$out" >&2; rm -f "$out"; log "failed: $*"; exit 1; fi
  rm -f "$out"
}

debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  # One-line ("deb [opts] URI suite ...") and deb822 ("URIs: URI") formats; the archive, not -security.
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        sed -nE 's/^(deb( \[[^]]*\])?|URIs:)[[:space:]]+([^[:space:]]+).*/\3/p' |
        grep -E '/debian/?$' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# pip settings to hand to the build, only those a container can use (not file:// or local paths).
pip_build_args() {
  local key value
  for key in index-url extra-index-url; do
    local var="PIP_$(echo "$key" | tr 'a-z-' 'A-Z_')"
    value=${!var:-$(pip3 config get "global.$key" 2>/dev/null || true)}
    value=$(tr ' ' '\n' <<<"$value" | grep -E '^https?://' | paste -sd' ' || true)
    [ -n "$value" ] && printf -- '--build-arg\n%s=%s\n' "$var" "$value"
  done
  return 0
}

# What Debian's own -slim images do: no apt package caches (39 MB each, in every layer that runs
# apt-get), no docs, man pages or translations, now or from later installs.
slim_rootfs() {
  local root=$1
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/cache/apt/*.bin \
         "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
}

build_bases() {
  local started=$SECONDS mirror rootfs
  if [ "${NETDOCTOR_REBUILD_BASE:-0}" = 1 ] || ! have_image "$ROOTFS_IMAGE"; then
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d /tmp/netdoctor-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap --variant=minbase $SUITE from $mirror"
    quietly debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror"
    slim_rootfs "$rootfs"
    tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$ROOTFS_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
  fi
  if [ "${NETDOCTOR_REBUILD_BASE:-0}" = 1 ] || ! have_image "$BASE_IMAGE"; then
    log "adding Debian's python3 to $ROOTFS_IMAGE"
    # The base trusts what this machine trusts (its local CAs, e.g. a TLS-inspecting egress proxy's),
    # as it uses this machine's apt mirror: pip inside `docker build` goes out the same way the host does.
    local context
    context=$(mktemp -d /tmp/netdoctor-base.XXXXXX)
    mkdir "$context/ca"
    cp /usr/local/share/ca-certificates/*.crt "$context/ca/" 2>/dev/null || true
    cat >"$context/Dockerfile" <<EOF
FROM $ROOTFS_IMAGE
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates \\
 && update-ca-certificates \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log
EOF
    quietly docker build -t "$BASE_IMAGE" "$context"
    rm -rf "$context"
    log "base images ready in $((SECONDS - started))s"
  fi
}

started=$SECONDS
build_bases
mapfile -t pip_args < <(pip_build_args)
log "docker build -t $IMAGE --build-arg BASE=$BASE_IMAGE ${pip_args[*]}"
quietly docker build -t "$IMAGE" --build-arg "BASE=$BASE_IMAGE" "${pip_args[@]}" .
log "built $IMAGE in $((SECONDS - started))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
