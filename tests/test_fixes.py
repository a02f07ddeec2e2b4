"""Fix commands shared by checks, run for real against a scratch file (never /etc/docker)."""

import json
import subprocess

from netdoctor.fixes import DAEMON_JSON, merge_daemon_json


def _run_on(path, command: str) -> None:
    assert command.startswith("sudo ") and DAEMON_JSON in command
    subprocess.run(command.removeprefix("sudo ").replace(DAEMON_JSON, str(path)), shell=True, check=True)


def test_daemon_json_merge_keeps_other_keys(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"data-root": "/srv/docker", "mtu": 1500, "log-opts": {"max-size": "10m"}}))
    _run_on(path, merge_daemon_json({"mtu": 1400, "icc": True, "dns": ["10.0.0.2"]}))
    assert json.loads(path.read_text()) == {"data-root": "/srv/docker", "mtu": 1400, "log-opts": {"max-size": "10m"},
                                            "icc": True, "dns": ["10.0.0.2"]}


def test_daemon_json_merge_creates_a_missing_or_empty_file(tmp_path):
    for content in (None, ""):
        path = tmp_path / "daemon.json"
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(content)
        _run_on(path, merge_daemon_json({"bip": "10.99.0.1/24"}))
        assert json.loads(path.read_text()) == {"bip": "10.99.0.1/24"}


def test_recreate_keeps_the_old_container_and_follows_compose():
    from types import SimpleNamespace

    from netdoctor.fixes import recreate

    plain = SimpleNamespace(name="web", image="shop/web", labels={})
    assert recreate(plain, "-p 8081:80") == (
        "docker stop web", "docker rename web web-old",
        "docker run -d --name web -p 8081:80 shop/web  # plus the other options of web-old: docker inspect web-old",
        "docker rm web-old  # once web works")
    assert all(c.startswith("# or: ") for c in recreate(plain, "-p 8081:80", alternative=True))
    composed = SimpleNamespace(name="shop-web-1", image="shop/web",
                               labels={"com.docker.compose.project": "shop", "com.docker.compose.service": "web"})
    [command] = recreate(composed, "--dns 10.0.0.2")
    assert command.startswith("docker compose -p shop up -d --force-recreate web")
