"""A Docker engine of the test's own, inside a network namespace of the test's own.

Its bridge, its iptables rules and its containers live in that namespace, so a test may flush Docker's
rules, load foreign tables or change policies there without touching the shared engine or the real
host. netdoctor is pointed at it with DOCKER_HOST=unix:///run/NAME.sock and --host-netns NAME.

    client netns (a "remote client")  198.51.100.2  <-veth->  uplink0 198.51.100.1  engine netns
    2001:db8:ff::2, a listener on 9000                        2001:db8:ff::1  docker0, dockerd, its containers

The engine namespace starts with forwarding off, as a fresh host does: dockerd turns it on itself and then
sets the FORWARD policy to DROP, as on real hosts.

Versions: "20.10" is Debian 12's dockerd (the machine's own); "28" is Debian unstable's docker.io 28.x,
unpacked by `scripts/engine.sh fetch` into /opt/docker-engines/28 (fetched on first use) and run with
its own containerd 2.x and Debian 12's runc. dockerd is started as netdoctor/lab/swarm.py does:
`nsenter --net=... unshare --uts --mount --propagation slave`, with /run/containerd hidden so that it
starts a containerd of its own. Every container gets --dns pointing at our resolver on uplink0.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from netdoctor.firewall.nft import is_iptables_table
from tests.conftest import ROOT, TEST_IMAGE, sh, unique

ENGINE_DIR = Path(os.environ.get("ENGINE_DIR", "/opt/docker-engines"))
DATA = Path("/var/lib/netdoctor-test-engines")
UPLINK_IP, CLIENT_IP = "198.51.100.1", "198.51.100.2"
UPLINK_IP6, CLIENT_IP6 = "2001:db8:ff::1", "2001:db8:ff::2"
CLIENT_PORT = 9000
START_TIMEOUT = 90.0


def engine_bin(version: str) -> Path | None:
    """The directory to put first on PATH for this version (None: the machine's own dockerd)."""
    if version == "20.10":
        return None
    done = sh("bash", str(ROOT / "scripts/engine.sh"), "fetch")
    return Path(done.stdout.strip().splitlines()[-1])


@dataclass
class Engine:
    name: str                   # also the netns name
    version: str
    client_netns: str
    daemon_args: tuple[str, ...] = ()
    own_pids: bool = False      # in a PID namespace of its own too: its State.Pid values are not this machine's
    process: subprocess.Popen | None = field(default=None, repr=False)
    resolver: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def socket(self) -> str:
        return f"/run/{self.name}.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def exec_root(self) -> Path:
        return Path(f"/run/{self.name}")

    @property
    def data_root(self) -> Path:
        return DATA / self.name

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.docker_host}

    def in_netns(self, *command: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *command], capture_output=True, text=True,
                              check=check, input=input)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.docker_host, *args], capture_output=True, text=True, check=check)

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.docker_host, version="auto", timeout=60)

    def netdoctor_args(self) -> list[str]:
        return ["--host-netns", self.name]

    def netns_of(self, container: str) -> str:
        """The network namespace of one of this engine's containers."""
        return f"/proc/{self.docker('inspect', '-f', '{{.State.Pid}}', container).stdout.strip()}/ns/net"

    def rules(self) -> dict[str, str]:
        """The engine namespace's iptables and ip6tables (to restore after a test changed them)."""
        return {tool: self.in_netns(f"{tool}-save").stdout for tool in ("iptables", "ip6tables")}

    def restore(self, saved: dict[str, str]) -> None:
        for tool, text in saved.items():
            self.in_netns(f"{tool}-restore", input=text)
        # native tables a test loaded (a firewalld-style table...); iptables-nft's own were restored above
        listing = json.loads(self.in_netns("nft", "-j", "list", "tables").stdout)["nftables"]
        for table in (item["table"] for item in listing if "table" in item):
            if not is_iptables_table(table["family"], table["name"]):
                self.in_netns("nft", "delete", "table", table["family"], table["name"])

    # --- life cycle --------------------------------------------------------------------------------

    def start(self) -> "Engine":
        self.data_root.mkdir(parents=True, exist_ok=True)
        path = engine_bin(self.version)
        env = dict(os.environ)
        if path:
            env["PATH"] = f"{path}:{env['PATH']}"
        dockerd = ["dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                   "--pidfile", f"/run/{self.name}.pid", "-H", self.docker_host, *self.daemon_args]
        script = "[ -d /run/containerd ] && mount -t tmpfs engine /run/containerd; exec " + " ".join(dockerd)
        log = open(DATA / f"{self.name}.log", "w")
        pids = ("--pid", "--fork", "--mount-proc") if self.own_pids else ()
        self.process = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.name}", "unshare", "--uts", "--mount",
                                         "--propagation", "slave", *pids, "sh", "-c", script],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while self.docker("version", check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd {self.version} in {self.name} did not start: "
                                   + (DATA / f"{self.name}.log").read_text()[-2000:])
            time.sleep(0.2)
        self.load_image()
        return self

    def load_image(self, image: str = TEST_IMAGE) -> None:
        """Copy `image` from the shared engine, streamed: never held in the test process, whose peak memory every
        process it starts later inherits as its own (tests/test_load.py measures netdoctor's)."""
        sh("bash", "-c", f"set -o pipefail; docker save {shlex.quote(image)} | "
                         f"docker -H {shlex.quote(self.docker_host)} load -q")

    def start_resolver(self) -> str:
        """Our DNS server on the engine's uplink address: what every container of this engine is given."""
        self.resolver = subprocess.Popen(["ip", "netns", "exec", self.name, sys.executable, "-m", "netdoctor.lab.resolver",
                                          "--address", UPLINK_IP], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return UPLINK_IP

    def run(self, name: str, *args: str, command: str = "httpd -f -p 80") -> str:
        self.docker("run", "-d", "--name", name, "--dns", UPLINK_IP, *args, TEST_IMAGE, *shlex.split(command))
        return name

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if self.resolver is not None:
            self.resolver.terminate()
            self.resolver.wait(5)
        # containerd, its shims and docker-proxy live in the engine's namespace: nothing of ours may outlive it
        for pid in sh("ip", "netns", "pids", self.name, check=False).stdout.split():
            sh("kill", "-9", pid, check=False)
        for path in (self.socket, f"/run/{self.name}.pid"):
            Path(path).unlink(missing_ok=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        subprocess.run(["umount", "-R", str(self.data_root)], capture_output=True)
        shutil.rmtree(self.data_root, ignore_errors=True)
        (DATA / f"{self.name}.log").unlink(missing_ok=True)


def build(make_netns, version: str, *daemon_args: str, own_pids: bool = False) -> Engine:
    """An engine netns wired to a client netns (the "remote client" of published-port tests). `own_pids`: the
    engine in a PID namespace of its own as well, as an engine of another machine looks from here."""
    DATA.mkdir(parents=True, exist_ok=True)
    netns, client = make_netns(f"e{version.replace('.', '')}"), make_netns("cli")
    sh("ip", "-n", netns, "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", client)
    sh("ip", "-n", netns, "addr", "add", f"{UPLINK_IP}/24", "dev", "uplink0")
    sh("ip", "-n", netns, "link", "set", "uplink0", "up")
    sh("ip", "-n", client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
    sh("ip", "-n", client, "link", "set", "eth0", "up")
    sh("ip", "-n", netns, "route", "add", "default", "via", CLIENT_IP)
    sh("ip", "-n", netns, "addr", "add", f"{UPLINK_IP6}/64", "dev", "uplink0", "nodad")
    sh("ip", "-n", client, "addr", "add", f"{CLIENT_IP6}/64", "dev", "eth0", "nodad")
    sh("ip", "-n", netns, "-6", "route", "add", "default", "via", CLIENT_IP6)
    for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
        sh("ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}=0")
    # addresses of their own, not the shared engine's 172.17.0.0/16 (only for readable evidence: each engine
    # lives in its own namespace)
    block = {"20.10": 230, "28": 231}.get(version, 232)
    defaults = (f"--bip=10.{block}.0.1/24", f"--default-address-pool=base=10.{block}.0.0/16,size=24")
    engine = Engine(netns, version, client, defaults + daemon_args, own_pids=own_pids)
    try:
        engine.start()
        engine.start_resolver()
    except BaseException:
        engine.stop()
        raise
    return engine


@contextlib.contextmanager
def started(version: str, *daemon_args: str, own_pids: bool = False):
    """build() in namespaces of its own: the engine stopped and its namespaces deleted on leaving, whatever
    happened (for module-scoped fixtures: `with engines.started("28") as engine: ...; yield engine`)."""
    created: list[str] = []

    def make_netns(prefix: str) -> str:
        name = unique(prefix)
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        created.append(name)
        return name

    built = None
    try:
        built = build(make_netns, version, *daemon_args, own_pids=own_pids)
        yield built
    finally:
        if built is not None:
            built.stop()
        for name in created:
            sh("ip", "netns", "delete", name, check=False)


def connects(netns_path: str, address: str, port: int, timeout: float = 1.0) -> bool:
    """Ground truth without netdoctor: does a TCP handshake from that namespace succeed?"""
    code = ("import socket,sys\ns=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
            f"s.settimeout({timeout})\nsys.exit(s.connect_ex((sys.argv[1], int(sys.argv[2]))))")
    return sh("nsenter", f"--net={netns_path}", sys.executable, "-c", code, address, str(port),
              check=False).returncode == 0


def http_answers(netns_path: str, address: str, port: int, timeout: float = 1.0) -> bool:
    """Ground truth for a published port: does an HTTP request get an answer (any status) from the container?
    A handshake alone proves nothing: Docker 28+ keeps published ports bound and listening itself."""
    code = ("import socket,sys\ns=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
            f"s.settimeout({timeout})\n"
            "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
            " sys.exit(0 if s.recv(5) == b'HTTP/' else 1)\n"
            "except OSError:\n sys.exit(1)")
    return sh("nsenter", f"--net={netns_path}", sys.executable, "-c", code, address, str(port),
              check=False).returncode == 0


class Listener:
    """A TCP listener in a namespace (the kernel completes handshakes without accept())."""

    def __init__(self, netns: str, address: str, port: int):
        import socket

        from netdoctor.netns import NamespaceWorker

        self.worker = NamespaceWorker(f"/run/netns/{netns}")
        self.socket = self.worker.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        self.socket.bind((address, port))
        self.socket.listen(16)

    def close(self) -> None:
        self.socket.close()
        self.worker.close()
