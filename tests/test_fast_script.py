"""scripts/test-fast.sh from a checkout that the unprivileged user it drops to cannot read: a clone under a
directory of mode 0700 (/root, or pytest's own temporary directory here), its .venv inside it, as CI makes
one at a path nobody knows in advance. The tier must still run there, as uid 65534."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="drops privileges: needs root")


@pytest.fixture
def private_checkout(tmp_path):
    """A copy of this checkout and its .venv under a directory only root may enter."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    checkout = private / "checkout"
    checkout.mkdir()
    for part in ("netdoctor", "checks", "tests", "scripts"):
        shutil.copytree(ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", checkout)
    venv = Path(sys.prefix)
    shutil.copytree(venv, checkout / ".venv", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    # the editable install's hook points at the checkout it was made in: at the copy, as a clone's would
    for hook in (checkout / ".venv").glob("lib/python*/site-packages/__editable___*finder.py"):
        hook.write_text(hook.read_text().replace(repr(str(ROOT)).strip("'"), str(checkout)))
    os.chmod(private, 0o700)
    yield checkout
    shutil.rmtree(private, ignore_errors=True)


def test_the_fast_tier_runs_from_a_checkout_nobody_may_read(private_checkout):
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "test", "-r"]
    assert subprocess.run([*nobody, str(private_checkout / "pyproject.toml")]).returncode != 0  # really out of reach
    done = subprocess.run(["bash", str(private_checkout / "scripts/test-fast.sh"), "-q", "-k", "test_tier"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout  # test_tier.py: it ran as nobody, without Docker
