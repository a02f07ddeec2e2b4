"""ports's judgement of both ends of a published port, from constructed sockets and processes (the real
faults: tests/test_ports.py; the firewall's part of a published port: test_firewall_checks.py)."""

from netdoctor.model import Status
from tests.fakes import FakeWorld

WEB_IP = "172.17.0.2"
FIREWALL_PART = ("firewall-drop", "docker-rules-missing", "published:")  # the DNAT's findings: not judged here


def _run(world, targets):
    return [f for f in world.run(targets, ["ports"]) if not f.key.startswith(FIREWALL_PART)]


def _proxy(ip: str, host_port: int, container_port: int) -> tuple[str, ...]:
    return ("/usr/bin/docker-proxy", "-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", str(host_port),
            "-container-ip", ip, "-container-port", str(container_port))


def _world():
    """A host with the default bridge and `web` (172.17.0.2) publishing 8080->80, docker-proxy holding 8080."""
    world = FakeWorld()
    world.uplink()
    bridge = world.bridge_network("bridge", "172.17.0.0/16")
    web = world.container("web", network=bridge, ip=WEB_IP, published=[(80, "tcp", "", 8080)])
    world.host.listen("tcp", "0.0.0.0", 8080, inode=101)
    world.process(900, *_proxy(WEB_IP, 8080, 80), holds=[101])
    return world, bridge, web


def _statuses(findings) -> list[tuple[str, str]]:
    return [(f.status.value, f.title) for f in findings]


def test_healthy_published_port_is_its_own_binding_with_a_listener_inside():
    world, _, web = _world()
    inside = world.namespaces[web.netns_path].listen("tcp", "0.0.0.0", 80, inode=202)
    world.process(41001, "httpd", "-f", holds=[202])
    own, listening = _run(world, [web])
    assert own.status is Status.PASS and own.title == "Host port 8080/tcp is web's own binding"
    assert listening.status is Status.PASS and listening.evidence["listening_on_port"] == ["tcp 0.0.0.0:80 by httpd (pid 41001)"]
    assert inside.listeners  # the scene really had a listener


def test_another_process_on_the_host_port_is_named_with_its_pid_and_a_free_port():
    world, _, web = _world()
    world.namespaces[web.netns_path].listen("tcp", "0.0.0.0", 80)
    world.host.listen("tcp", "0.0.0.0", 8080, inode=102)
    world.process(777, "/usr/sbin/nginx", "-g", "daemon off;", holds=[102])
    [clash] = [f for f in _run(world, [web]) if f.status is Status.WARN]
    assert clash.title == "Host port 8080/tcp is also held by nginx (pid 777) on 0.0.0.0:8080"
    assert "kill 777  # nginx" in clash.fix.commands
    assert "free host port 8081" in clash.fix.summary  # the next port nothing holds


def test_start_failed_on_a_port_another_container_holds():
    world, bridge, _ = _world()
    world.container("api", network=bridge, ip="172.17.0.3", published=[(80, "tcp", "", 9090)])
    world.host.listen("tcp", "0.0.0.0", 9090, inode=103)
    world.process(901, *_proxy("172.17.0.3", 9090, 80), holds=[103])
    blocked = world.container("blocked", network=bridge, ip="172.17.0.4", status="created",
                              published=[(8000, "tcp", "", 9090)], error="Bind for 0.0.0.0:9090 failed: port is already allocated")
    findings = _run(world, [blocked])
    [failed] = [f for f in findings if f.status is Status.FAIL]
    assert failed.title == "blocked could not start: host port 9090/tcp is held by container api on 0.0.0.0:9090"
    assert "docker stop api" in failed.fix.commands and "docker start blocked" in failed.fix.commands
    assert [f.status for f in findings if f.status is Status.SKIP] == [Status.SKIP]  # no namespace to look into


def test_nothing_listening_inside_fails_and_suggests_the_port_that_is_served():
    world, _, web = _world()
    world.namespaces[web.netns_path].listen("tcp", "0.0.0.0", 8000)
    [nothing] = [f for f in _run(world, [web]) if f.status is Status.FAIL]
    assert nothing.title == "Nothing listens on 80/tcp inside web: 8080->80/tcp leads nowhere"
    assert "publish that port instead" in nothing.fix.summary and "8000/tcp" in nothing.fix.summary
    assert any("-p 8080:8000" in command for command in nothing.fix.commands)


def test_service_bound_to_loopback_only_is_reset():
    world, _, web = _world()
    world.namespaces[web.netns_path].listen("tcp", "127.0.0.1", 80)
    [loopback] = [f for f in _run(world, [web]) if f.status is Status.FAIL]
    assert loopback.title == "The service in web listens on loopback only: 8080->80/tcp is reset"
    assert WEB_IP in loopback.detail


def test_database_port_on_every_interface_warns_and_on_loopback_does_not():
    world = FakeWorld()
    world.uplink()
    bridge = world.bridge_network("bridge", "172.17.0.0/16")
    open_db = world.container("db", network=bridge, published=[(5432, "tcp", "", 5432)])
    local_db = world.container("localdb", network=bridge, published=[(5432, "tcp", "127.0.0.1", 15432)])
    for target in (open_db, local_db):
        world.namespaces[target.netns_path].listen("tcp", "0.0.0.0", 5432)
    exposure = [f for f in _run(world, [open_db, local_db]) if f.status is Status.WARN]
    assert [(f.target, f.title) for f in exposure] == [
        ("container:db", "PostgreSQL port 5432 of db is published on every host interface")]
    assert "-p 127.0.0.1:5432:5432" in exposure[0].fix.summary


def test_host_networking_and_no_published_port_have_nothing_to_judge():
    world = FakeWorld()
    world.uplink()
    host_mode = world.container("hostnet", network_mode="host")
    quiet = world.container("quiet", network=world.bridge_network("bridge", "172.17.0.0/16"))
    findings = {f.target: f for f in _run(world, [host_mode, quiet])}
    assert findings["container:hostnet"].status is Status.INFO
    assert _statuses([findings["container:quiet"]]) == [("pass", "quiet publishes no port")]
