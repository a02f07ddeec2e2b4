#!/bin/sh
# bytecode-only.sh PYTHON PATH...: compile every .py under PATH to a .pyc beside it (the layout Python
# imports when no source is there), then drop the sources and __pycache__ directories. Half the size on
# disk; imports are as fast (the bytecode is what was loaded anyway); a traceback names file and line
# but cannot quote it. Used by the Dockerfile for the image's libraries and standard library. A file that
# does not compile (test data in Python 2 syntax) keeps its source.
set -eu
python=$1
shift
"$python" -m compileall -q -b -j 0 "$@" >/dev/null || true
for path in "$@"; do
  find "$path" -name '*.py' -exec sh -c 'for f; do [ -e "${f}c" ] && rm -f "$f"; done; true' sh {} +
  [ -e "$path" ] || continue  # a module file that was its own source
  find "$path" -name __pycache__ -type d -prune -exec rm -rf {} +
done
