#!/usr/bin/env bash
# The fast tier (tests/fast): every check's judgement on constructed facts, the runner, the core and the
# reporters, in seconds. It needs no root and no Docker, and this script proves it: run as root, it drops
# to nobody (uid/gid 65534, no supplementary groups, so no capabilities either) with DOCKER_HOST pointing
# at a socket that does not exist; run as anyone else, it runs as they are, DOCKER_HOST likewise.
#
#   bash scripts/test-fast.sh                   the whole tier (-q)
#   bash scripts/test-fast.sh -k dns -x         these pytest arguments instead
#
# Works from any checkout: where nobody cannot read it or its .venv (a clone under /root, mode 0700; a
# pyenv interpreter there), the tier runs from a copy in a world-readable temporary directory instead.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- -q

drop=()
if [ "$(id -u)" -eq 0 ]; then
  drop=(setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs)
fi
home=$(mktemp -d /tmp/netdoctor-fast.XXXXXX)
chmod 0777 "$home"
trap 'rm -rf "$home"' EXIT
environment=(env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
             DOCKER_HOST=unix:///nonexistent/docker.sock NETDOCTOR_FAST_TIER=unprivileged
             HYPOTHESIS_STORAGE_DIRECTORY="$home/hypothesis")
# a python that imports its libraries from SITE (a site-packages directory) ahead of the system's own
with_site='import site, sys; d = sys.argv.pop(1); site.addsitedir(d); sys.path.remove(d); sys.path.insert(1, d); '
run_pytest='import pytest; sys.exit(pytest.main(sys.argv[1:]))'

usable() {  # usable DIR PYTHON [SITE]: can the user the tier runs as import its code and libraries from DIR?
  local code='import os, sys; sys.path.insert(0, os.getcwd()); import pytest, hypothesis, netdoctor.cli, netdoctor.checks, tests.fakes'
  if [ $# -gt 2 ]; then set -- "$1" "$2" -c "$with_site$code" "$3"; else set -- "$1" "$2" -c "$code"; fi
  (cd "$1" && shift && "${drop[@]}" "${environment[@]}" "$@") >/dev/null 2>&1
}

version=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
packages=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
system=$(PATH=/usr/local/bin:/usr/bin:/bin command -v "python$version" || true)
here=.
if usable . .venv/bin/python; then
  python=(.venv/bin/python -m pytest)
elif [ -n "$system" ] && usable . "$system" "$packages"; then
  # the venv's interpreter lives where that user may not go (a pyenv build under /root): the system's
  # interpreter of the same version with the venv's packages (the same code, the same libraries)
  python=("$system" -c "$with_site$run_pytest" "$packages")
else
  # the checkout or the venv's packages are out of that user's reach: run a readable copy of both (the
  # package laid out as installed, checks/ as netdoctor/checks; the venv's libraries without the editable
  # install's hook, which points back into this checkout)
  here="$home/checkout"
  mkdir -p "$here/site-packages"
  cp -r netdoctor tests pyproject.toml "$here/"
  cp -r checks "$here/netdoctor/checks"
  (cd "$packages" && tar -c --exclude='__editable__*' --exclude=__pycache__ .) | tar -x -C "$here/site-packages"
  chmod -R a+rX "$here"
  interpreter=$PWD/.venv/bin/python
  if ! "${drop[@]}" "${environment[@]}" "$interpreter" -c "" 2>/dev/null; then
    interpreter=$system
  fi
  if [ -z "$interpreter" ] || ! usable "$here" "$interpreter" "$here/site-packages"; then
    echo "test-fast.sh: the unprivileged user cannot run this checkout's .venv/bin/python, and the system has" \
         "no python$version it could run instead: install python$version, or run the tier as a user who can" \
         "read $PWD" >&2
    exit 1
  fi
  python=("$interpreter" -c "$with_site$run_pytest" "$here/site-packages")
fi
cd "$here"
exec "${drop[@]}" "${environment[@]}" "${python[@]}" tests/fast -p no:cacheprovider "$@"
