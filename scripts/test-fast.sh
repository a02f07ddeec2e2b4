#!/usr/bin/env bash
# The fast tier (tests/fast): every check's judgement on constructed facts, the runner, the core and the
# reporters, in seconds. It needs no root and no Docker, and this script proves it: run as root, it drops
# to nobody (uid/gid 65534, no supplementary groups, so no capabilities either) with DOCKER_HOST pointing
# at a socket that does not exist; run as anyone else, it runs as they are, DOCKER_HOST likewise.
#
#   bash scripts/test-fast.sh                   the whole tier (-q)
#   bash scripts/test-fast.sh -k dns -x         these pytest arguments instead
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

python=(.venv/bin/python)
if ! "${drop[@]}" "${environment[@]}" "${python[@]}" -c "" 2>/dev/null; then
  # The venv's interpreter lives where that user may not go (a pyenv build under /root, mode 0700): take the
  # system's interpreter of the same version with the venv's packages (the same code, the same libraries).
  version=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  packages=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  system=$(PATH=/usr/local/bin:/usr/bin:/bin command -v "python$version" || true)
  if [ -z "$system" ]; then
    echo "test-fast.sh: .venv/bin/python is not usable by uid 65534 and there is no system python$version" >&2
    exit 1
  fi
  python=("$system" -c 'import site, sys; site.addsitedir(sys.argv.pop(1)); import pytest; sys.exit(pytest.main(sys.argv[1:]))'
          "$packages")
else
  python+=(-m pytest)
fi
exec "${drop[@]}" "${environment[@]}" "${python[@]}" tests/fast -p no:cacheprovider "$@"
