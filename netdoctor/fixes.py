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


def recreate(container, run_flags: str, alternative: bool = False) -> tuple[str, ...]:
    """Recreate `container` with `run_flags` (Docker cannot change published ports or DNS of an existing
    container). A Compose service is recreated through Compose; otherwise the old container is kept,
    renamed, until the new one works: nothing is deleted that a rollback would need. With `alternative`,
    the lines are commented out (`# or: ...`), so pasting the whole fix runs only the first option."""
    project = container.labels.get("com.docker.compose.project")
    service = container.labels.get("com.docker.compose.service")
    if project and service:
        commands: tuple[str, ...] = (f"docker compose -p {project} up -d --force-recreate {service}"
                                     f"  # after setting {run_flags} for {service} in the compose file",)
    else:
        old = f"{container.name}-old"
        commands = (f"docker stop {container.name}", f"docker rename {container.name} {old}",
                    f"docker run -d --name {container.name} {run_flags} {container.image}"
                    f"  # plus the other options of {old}: docker inspect {old}",
                    f"docker rm {old}  # once {container.name} works")
    return tuple(f"# or: {c}" for c in commands) if alternative else commands
