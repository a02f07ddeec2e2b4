"""netdoctor's Engine API client against a fake engine of the test's own: an HTTP server on a Unix socket
(and on loopback TCP with TLS, certificates made by openssl), answering canned inspect documents. What it
proves: the requests a run makes (one per container and network, whatever the number of checks asking),
errors named as the user needs them, and DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH read as the
docker CLI reads them. The real engine: every test of the real-fault tier."""

import http.server
import json
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from netdoctor.dockerapi import ContainerNotFound, DockerSession, DockerUnavailable
from netdoctor.errors import BadInput

WEB = {"Id": "f" * 64, "Name": "/web", "State": {"Status": "running", "Pid": 4242},
       "Config": {"Image": "shop/web", "Labels": {"tier": "web"}}, "HostConfig": {"NetworkMode": "shop"},
       "NetworkSettings": {"Networks": {"shop": {"NetworkID": "n" * 64, "IPAddress": "10.70.0.2", "IPPrefixLen": 24},
                                        "gone": {"NetworkID": "g" * 64, "IPAddress": "10.71.0.2", "IPPrefixLen": 24}}}}
SHOP = {"Id": "n" * 64, "Name": "shop", "Driver": "bridge", "IPAM": {"Config": [{"Subnet": "10.70.0.0/24"}]}}


class Engine(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as dockerd speaks it
    routes: dict = {}
    requests: list = []

    def do_GET(self):
        url = urlsplit(self.path)
        self.requests.append((url.path, parse_qs(url.query)))
        status, body = self.routes.get(url.path, (404, {"message": f"page not found: {url.path}"}))
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class UnixEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port) client address


@pytest.fixture
def engine(tmp_path, monkeypatch):
    """A fake engine on tmp_path/docker.sock, DOCKER_HOST pointing at it."""
    Engine.requests = []
    Engine.routes = {"/containers/web/json": (200, WEB), f"/containers/{'f' * 64}/json": (200, WEB),
                     f"/networks/{'n' * 64}": (200, SHOP), "/containers/json": (200, [{"Id": "f" * 64, "State": "running"}]),
                     "/info": (200, {"ServerVersion": "28.5.2", "Swarm": {"LocalNodeState": "inactive"}})}
    path = str(tmp_path / "docker.sock")
    server = UnixEngine(path, Engine)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    yield Engine
    server.shutdown()
    server.server_close()


def test_each_container_and_network_is_asked_for_once_per_run(engine):
    session = DockerSession()
    web = session.container("web")
    assert (web.name, web.pid, [a.network for a in web.attachments]) == ("web", 4242, ["shop", "gone"])
    assert session.container("web") is web and session.container("f" * 64) is web
    assert [n.name for _, n in session.networks_of(web)] == ["shop"]  # the removed network is left out
    session.networks_of(web)
    assert [path for path, _ in engine.requests] == ["/containers/web/json", f"/networks/{'n' * 64}", f"/networks/{'g' * 64}"]
    session.close()


def test_a_listing_inspects_only_what_the_run_has_not_seen(engine):
    session = DockerSession()
    session.container("web")
    [listed] = session.containers(filters={"label": ["tier=web"]})
    assert listed.name == "web"
    path, query = engine.requests[-1]
    assert path == "/containers/json" and json.loads(query["filters"][0]) == {"label": ["tier=web"]}
    assert len(engine.requests) == 2  # the inspect was not repeated


def test_states_ask_the_engine_again_in_one_call(engine):
    session = DockerSession()
    session.container("web")
    assert session.states(["f" * 64, "e" * 64]) == {"f" * 64: "running"}
    path, query = engine.requests[-1]
    assert path == "/containers/json" and query["all"] == ["1"]
    assert json.loads(query["filters"][0]) == {"id": ["f" * 64, "e" * 64]}


def test_errors_are_named_for_the_user(engine, tmp_path, monkeypatch):
    engine.routes["/containers/ghost/json"] = (404, {"message": "No such container: ghost"})
    engine.routes["/info"] = (500, {"message": "daemon is shutting down"})
    engine.routes["/networks"] = (200, b"<html>a proxy's error page</html>")
    session = DockerSession()
    with pytest.raises(ContainerNotFound, match="no container named or with id 'ghost'"):
        session.container("ghost")
    with pytest.raises(DockerUnavailable, match="refused /info: daemon is shutting down"):
        session.info()
    with pytest.raises(DockerUnavailable, match="is not JSON: is it a Docker engine"):
        session.all_networks()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    with pytest.raises(DockerUnavailable, match="not reachable .no socket there: is dockerd running"):
        DockerSession().info()
    monkeypatch.setenv("DOCKER_HOST", "ssh://admin@build-host")
    # never "forward the remote socket here": its containers' pids would name unrelated local processes
    with pytest.raises(BadInput, match="unix:// or tcp://.*-H ssh://admin@build-host.*--context") as refused:
        DockerSession().info()
    assert "forward" not in str(refused.value)


def test_a_connection_the_engine_closed_is_replaced(engine):
    session = DockerSession()
    session.info()
    for conn in session.engine._idle:  # the engine dropped the kept-alive connection meanwhile
        conn.sock.shutdown(socket.SHUT_RDWR)
    assert session.container("web").name == "web"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA, the engine's certificate for 127.0.0.1 and a client certificate, as `dockerd --tlsverify` uses."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test's certificates (apt-get install openssl)")
    certs = tmp_path_factory.mktemp("certs")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=certs, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", "/CN=test CA", "-keyout", "ca-key.pem", "-out", "ca.pem")
    for name, subject, extension in (("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                                     ("cert", "/CN=client", "extendedKeyUsage=clientAuth")):
        key = "key.pem" if name == "cert" else f"{name}-key.pem"
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", subject,
                "-keyout", key, "-out", f"{name}.csr")
        (certs / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return certs


@pytest.fixture
def tls_engine(certificates, tmp_path, monkeypatch):
    """The fake engine on 127.0.0.1 behind TLS with client certificates; DOCKER_CERT_PATH holds a copy of
    the client's files (tests may change them)."""
    certs = tmp_path / "certs"
    shutil.copytree(certificates, certs)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certificates / "ca.pem"))
    context.load_cert_chain(certificates / "server.pem", certificates / "server-key.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    Engine.requests = []
    Engine.routes = {"/info": (200, {"ServerVersion": "28.5.2"})}
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Engine)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
    yield certs
    server.shutdown()
    server.server_close()


def test_tls_with_verification_and_client_certificates(tls_engine, monkeypatch):
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    assert DockerSession().info()["ServerVersion"] == "28.5.2"


def test_tls_verification_refuses_an_engine_signed_by_another_ca(tls_engine, monkeypatch):
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    (tls_engine / "ca.pem").write_text((tls_engine / "cert.pem").read_text())  # trust something else
    with pytest.raises(DockerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        DockerSession().info()


def test_tls_without_verification_still_presents_the_client_certificate(tls_engine, monkeypatch):
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)  # DOCKER_CERT_PATH alone: TLS, no verification
    (tls_engine / "ca.pem").unlink()
    assert DockerSession().info()["ServerVersion"] == "28.5.2"


def test_unusable_tls_files_are_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))  # no ca.pem there
    with pytest.raises(BadInput, match="expected a directory holding ca.pem, cert.pem and key.pem"):
        DockerSession().info()


def test_an_engine_whose_pids_are_not_this_machines_is_refused_before_its_pid_is_entered(engine, monkeypatch):
    """DOCKER_HOST at an engine of another machine (or of another PID namespace): its State.Pid names some
    unrelated process here, whose namespaces netdoctor must not take for the container's. Process 4242's, or
    ours (this test's process stands in for the unrelated one): its cgroup and mounts do not name web's id."""
    import os

    from netdoctor import targets

    monkeypatch.setattr(targets, "_sees_host_pids", lambda: True)  # as on a host, also where the tier runs in a container
    Engine.routes["/containers/web/json"] = (200, {**WEB, "State": {"Status": "running", "Pid": os.getpid()}})
    session = DockerSession()
    host = targets.Target("host", "host", "/proc/1/ns/net")
    with pytest.raises(targets.ForeignEngine, match=f"does not run web on this machine.*-H {session.address} web") as refused:
        targets.resolve("web", session, host)
    assert isinstance(refused.value, BadInput)
    # a pid that is no process here, while the engine, asked again, still runs web with it: refused too
    gone = 2 ** 22 + 1  # above any pid_max
    Engine.routes["/containers/web/json"] = (200, {**WEB, "State": {"Status": "running", "Pid": gone}})
    Engine.routes[f"/containers/{WEB['Id']}/json"] = Engine.routes["/containers/web/json"]
    with pytest.raises(targets.ForeignEngine, match=f"its pid {gone} is no process here"):
        targets.resolve("web", DockerSession(), host)
    # ... unless web just stopped or restarted: then the target stands, and the run reports it vanished
    Engine.routes[f"/containers/{WEB['Id']}/json"] = (200, {**WEB, "State": {"Status": "exited", "Pid": 0}})
    assert targets.resolve("web", DockerSession(), host).netns_path == f"/proc/{gone}/ns/net"


def test_the_node_agent_refuses_a_socket_of_another_engine(engine, monkeypatch):
    """`check -H unix:///run/e28.sock` of an engine in a mount namespace of its own: had the agent been given
    /var/run/docker.sock there, another engine (the machine's) would answer. It says so, once, and judges
    nothing: no container or network of that other engine is looked at."""
    import io

    from netdoctor import targets
    from netdoctor.swarm import node
    from netdoctor.swarm.protocol import Decoder, Emitter

    monkeypatch.setattr(targets, "network_owner_id", lambda: None)  # the ID alone tells them apart here
    Engine.routes["/info"] = (200, {"ID": "SHARED:ID", "Name": "shared-host", "Swarm": {}})
    plan = {"run": "r1", "targets": ["web"], "selector": {"all": False, "labels": [], "compose_project": None,
                                                          "networks": []},
            "checks": [], "skip": [], "timeout": 1.0, "peers": [], "probes": [], "resolve": [],
            "engine": node.engine_plan({"ID": "E28:ID", "Name": "e28"}, "/run/e28.sock")}
    out = io.StringIO()
    node.diagnose_node(plan, Emitter(out))
    records = Decoder().feed(out.getvalue())
    assert [r["t"] for r in records] == ["hello", "plan", "error", "done"]
    assert records[1]["targets"] == [] and records[1]["asked"] == []
    message = records[2]["message"]
    assert "/run/e28.sock" in message and "SHARED:ID" in message and "E28:ID" in message and "shared-host" in message
    assert [path for path, _ in Engine.requests] == ["/info"]
    # the engine the plan names (or a plan of an older manager, naming none) is accepted
    assert node.foreign_socket(plan["engine"], {"ID": "E28:ID"}) == node.foreign_socket({}, {"ID": "SHARED:ID"}) == ""


def test_the_node_agent_refuses_an_engine_with_the_same_id_that_does_not_know_it(engine, monkeypatch):
    """Docker 20.10 derives Info.ID from /etc/docker/key.json: engines of one machine sharing that directory
    (the shared engine and one in a mount namespace of its own) report the same ID. The agent's own container
    tells them apart: only the engine that started it knows it."""
    import io

    from netdoctor import targets
    from netdoctor.swarm import node
    from netdoctor.swarm.protocol import Decoder, Emitter

    agent_id = "a" * 64
    monkeypatch.setattr(targets, "network_owner_id", lambda: agent_id)
    Engine.routes["/info"] = (200, {"ID": "SAME:ID", "Name": "vm", "Swarm": {}})
    plan = {"run": "r2", "targets": ["web"], "selector": {"all": False, "labels": [], "compose_project": None,
                                                          "networks": []},
            "checks": [], "skip": [], "timeout": 1.0, "peers": [], "probes": [], "resolve": [],
            "engine": node.engine_plan({"ID": "SAME:ID", "Name": "vm"}, "/run/e2010.sock")}
    out = io.StringIO()
    node.diagnose_node(plan, Emitter(out))
    records = Decoder().feed(out.getvalue())
    assert [r["t"] for r in records] == ["hello", "plan", "error", "done"]
    assert "does not know the agent's own container" in records[2]["message"]
    assert [path for path, _ in Engine.requests] == ["/info", f"/containers/{agent_id}/json"]
