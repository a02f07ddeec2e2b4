"""Fix commands more than one check prints."""

from __future__ import annotations

import json
import shlex

DAEMON_JSON = "/etc/docker/daemon.json"


def merge_daemon_json(settings: dict) -> str:
    """A command that sets `settings` in daemon.json and keeps every other key (a bare `tee` would wipe
    data-root, storage-driver, log options...). Python is there: netdoctor runs on it."""
    script = (f'import json, os; p = "{DAEMON_JSON}"; '
              "d = json.load(open(p)) if os.path.exists(p) and os.path.getsize(p) else {}; "
              f'd.update(json.loads({json.dumps(json.dumps(settings))})); open(p, "w").write(json.dumps(d, indent=2) + chr(10))')
    return f"sudo python3 -c {shlex.quote(script)}"
