"""A real Docker Swarm of N nodes (default 3) on this one machine: `netdoctor lab up swarm [--nodes N]`.

Each node is a network namespace (ndlab-<scenario>-manager|worker1|...|workerN-1) with its own dockerd,
joined to the others by a bridge living in a namespace of its own (ndlab-<scenario>-br), so the real host's
links, routes and firewall are never touched. The nodes have no default route: nothing they send can leave
the lab. The manager creates an attachable overlay network and every node runs one busybox container on it.

dockerd must be started with `nsenter --net=... unshare --uts --mount --propagation slave`: `ip netns exec`
would remount /sys and hide the cgroups from it. Its mounts (image layers, the overlay's namespace
files) stay in that private mount namespace and vanish with its processes. In that mount namespace the
node's own socket is also bind-mounted over /var/run/docker.sock, so a container that mounts "the Docker
socket" (netdoctor's `check --swarm` agent) talks to its own node's engine, as on a real node. Nothing can
be pulled here, so the test image and netdoctor's own image (when the host has it) are copied from the
host's engine (`docker save | docker load`).

Every engine is registered as a lab node (netdoctor.lab.nodes), so `netdoctor check --node swarm-worker1 CTR`
picks that node's engine and namespace.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from netdoctor.lab import nodes
from netdoctor.lab.scenario import LAB_LABEL, Expectation, LabTarget, Scenario
from netdoctor.lab.topology import Builder, LabError, teardown

IMAGE = os.environ.get("NETDOCTOR_TEST_IMAGE", "netdoctor-test/busybox:latest")
AGENT_IMAGE = os.environ.get("NETDOCTOR_IMAGE", "netdoctor:latest")  # what `check --swarm` runs on each node
DATA_ROOT = Path("/var/lib/netdoctor-lab")
DOCKER_SOCKET = "/run/docker.sock"  # /var/run/docker.sock: what containers mount as "the Docker socket"
UNDERLAY_PREFIX = "10.212.0."     # only inside the lab's namespaces: cannot clash with the host's routes
RESOLVER = "10.212.0.1"           # our resolver on the lab bridge: the embedded DNS's only upstream
FIRST_HOST = 11                   # the manager is .11, worker1 .12, ...
MAX_NODES = 40
OVERLAY_SUBNET = "10.214.0.0/24"
ENGINE_START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
CONVERGE_TIMEOUT = 30.0


def roles(count: int) -> tuple[str, ...]:
    """The nodes of a lab of `count` nodes: one manager, then workers."""
    return ("manager",) + tuple(f"worker{i}" for i in range(1, count))


NODES = roles(3)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise LabError(f"`{' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")
    return done


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _kill(pids: list[int], timeout: float) -> None:
    """SIGTERM, then SIGKILL whatever is still alive after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while (pids := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pids:
            return


class SwarmScenario(Scenario):
    name = "swarm"
    summary = "Docker engines in their own namespaces forming a Swarm (1 manager, 2 workers; --nodes N) with an overlay"
    expect = None
    slow = True  # about 6 s up for 3 nodes (plus ~10 s to copy netdoctor's image in), 3 s down
    multi_node = True

    def __init__(self, name: str | None = None, nodes: int = len(NODES), agent_image: str | None = AGENT_IMAGE):
        """`agent_image`: netdoctor's image, copied into every node when the host has it (None: not copied)."""
        if name:
            self.name = name  # tests use their own name so they never collide with a `lab up swarm`
        self.set_size(nodes)
        self.agent_image = agent_image
        self._loaded: tuple[str, ...] = ()  # images copied into the nodes

    def set_size(self, count: int) -> None:
        if not 2 <= count <= MAX_NODES:
            raise LabError(f"a swarm lab has 2 to {MAX_NODES} nodes, not {count}")
        self.nodes = roles(count)

    # --- names ------------------------------------------------------------------------------------

    def netns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def socket(self, node: str) -> str:
        return f"/run/{self.prefix}-{node}.sock"

    def docker_host(self, node: str) -> str:
        return f"unix://{self.socket(node)}"

    def exec_root(self, node: str) -> Path:
        return Path(f"/run/{self.prefix}-{node}")

    def pidfile(self, node: str) -> Path:
        return Path(f"/run/{self.prefix}-{node}.pid")

    def data_root(self, node: str) -> Path:
        return DATA_ROOT / self.name / node

    def address(self, node: str) -> str:
        index = 0 if node == "manager" else int(node.removeprefix("worker"))
        return f"{UNDERLAY_PREFIX}{FIRST_HOST + index}"

    def node_name(self, node: str) -> str:
        """The name `netdoctor check --node` knows this node by."""
        return f"{self.name}-{node}"

    @property
    def overlay(self) -> str:
        return f"{self.prefix}-ov"

    def container(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def client(self, node: str):
        import docker

        return docker.DockerClient(base_url=self.docker_host(node), version="auto", timeout=30)

    # --- up ---------------------------------------------------------------------------------------

    def up(self) -> list[LabTarget]:
        self.down()
        try:
            self._underlay(Builder(self.name))
            self._start_engines()
            clients = {node: self.client(node) for node in self.nodes}
            self._form_swarm(clients)
            self._load_images(clients)
            clients["manager"].networks.create(self.overlay, driver="overlay", attachable=True,
                                               ipam=_ipam(OVERLAY_SUBNET), labels={LAB_LABEL: self.name})
            with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
                list(pool.map(lambda n: clients[n].containers.run(
                    IMAGE, "httpd -f -p 80", name=self.container(n), network=self.overlay, detach=True,
                    dns=[RESOLVER], labels={LAB_LABEL: self.name}), self.nodes))
            self.wait_converged(clients)
            for node in self.nodes:
                nodes.register(self.node_name(node), self.docker_host(node), self.netns(node), self.address(node))
            self.break_it()
        except BaseException:
            self.down()
            raise
        targets = [LabTarget(self.container(node), ("--node", self.node_name(node))) for node in self.nodes]
        if self.has_agent_image:
            targets.append(LabTarget("--swarm", ("--node", self.node_name("manager"), "--image", self.agent_image)))
        return targets

    @property
    def has_agent_image(self) -> bool:
        """netdoctor's image was copied into the nodes (so `check --swarm` can run on this lab)."""
        return bool(self.agent_image) and self.agent_image in self._loaded

    def break_it(self) -> None:
        """Fault scenarios add their fault here; the plain swarm is healthy."""

    def _underlay(self, builder: Builder) -> None:
        """The nodes' namespaces on one bridge, and our resolver on it (recorded in the lab's state file)."""
        bridge = builder.netns("br")
        builder.bridge(bridge, "br0")
        builder.addr(bridge, "br0", f"{RESOLVER}/24")
        for node in self.nodes:
            ns = builder.netns(node)
            builder.veth(bridge, node, ns, "eth0")
            builder.enslave(bridge, node, "br0")
            builder.addr(ns, "eth0", f"{self.address(node)}/24")
        builder.resolver("dns", RESOLVER, netns=bridge)

    def _start_engines(self) -> None:
        if not os.path.exists(DOCKER_SOCKET):
            raise LabError(f"the nodes' sockets are mounted over {DOCKER_SOCKET}, which must exist (the host's engine)")
        for node in self.nodes:
            self.data_root(node).mkdir(parents=True, exist_ok=True)
            dockerd = (f"dockerd --data-root {self.data_root(node)} --exec-root {self.exec_root(node)} "
                       f"--pidfile {self.pidfile(node)} -H {self.docker_host(node)} --bridge=none")
            # In the engine's private mount namespace: its own hostname, a system containerd (if any) hidden so
            # that dockerd starts its own instead of sharing the host's, and its data root in memory: it vanishes
            # with the engine (deleting its image layers from disk took seconds per node).
            script = (f"hostname {node}; [ -d /run/containerd ] && mount -t tmpfs lab /run/containerd; "
                      f"mount -t tmpfs -o mode=0711 lab {self.data_root(node)} && exec {dockerd}")
            log = open(self.data_root(node).parent / f"{node}.log", "w")
            subprocess.Popen(["nsenter", f"--net=/run/netns/{self.netns(node)}", "unshare", "--uts", "--mount",
                              "--propagation", "slave", "sh", "-c", script],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        deadline = time.monotonic() + ENGINE_START_TIMEOUT
        for node in self.nodes:
            while not self._answers(node):
                if time.monotonic() > deadline:
                    log = (self.data_root(node).parent / f"{node}.log").read_text().strip().splitlines()
                    raise LabError(f"dockerd of {node} did not start: {log[-1] if log else 'no output'}")
                time.sleep(0.1)
            # in the engine's own mount namespace only: its socket is "the Docker socket" there
            engine = self.pidfile(node).read_text().strip()
            _run("nsenter", "-t", engine, "-m", "mount", "--bind", self.socket(node), DOCKER_SOCKET)

    def _answers(self, node: str) -> bool:
        if not os.path.exists(self.socket(node)):
            return False
        try:
            client = self.client(node)
            client.ping()
            client.close()
            return True
        except Exception:
            return False

    def _form_swarm(self, clients) -> None:
        manager = self.address("manager")
        clients["manager"].swarm.init(advertise_addr=manager, listen_addr=f"{manager}:2377")
        token = clients["manager"].swarm.attrs["JoinTokens"]["Worker"]
        for node in self.nodes[1:]:
            clients[node].swarm.join(remote_addrs=[f"{manager}:2377"], join_token=token,
                                     advertise_addr=self.address(node), listen_addr=f"{self.address(node)}:2377")

    def wait_converged(self, clients=None, timeout: float = CONVERGE_TIMEOUT) -> None:
        """Until every engine knows every node's container on the overlay (gossip takes a moment)."""
        clients = clients or {node: self.client(node) for node in self.nodes}
        deadline = time.monotonic() + timeout
        while True:
            known = {node: len(((clients[node].api.inspect_network(self.overlay, verbose=True).get("Services") or {})
                                .get("") or {}).get("Tasks") or ()) for node in self.nodes}
            if all(count == len(self.nodes) for count in known.values()):
                return
            if time.monotonic() > deadline:
                raise LabError(f"the overlay did not converge in {timeout:g}s: containers known per node {known}")
            time.sleep(0.2)

    def _load_images(self, clients) -> None:
        """The test image, and netdoctor's own when the host has it, into every node (one archive, N loads)."""
        import docker
        import docker.errors

        host = docker.from_env(version="auto", timeout=300)
        try:
            wanted = [IMAGE]
            if self.agent_image:
                try:
                    host.images.get(self.agent_image)
                    wanted.append(self.agent_image)
                except docker.errors.ImageNotFound:
                    pass  # `check --swarm` on this lab will say which node lacks it
            archives = [b"".join(host.api.get_image(image)) for image in wanted]  # `docker save IMAGE`
        finally:
            host.close()
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda n: [list(clients[n].api.load_image(a)) for a in archives], self.nodes))
        self._loaded = tuple(wanted)

    # --- down -------------------------------------------------------------------------------------

    def present(self) -> list[str]:
        """Every node of this lab that left a trace (namespace, socket, pidfile, data root), whatever its size."""
        found = set(self.nodes)
        prefix = f"{self.prefix}-"
        names = [n for n in _run("ip", "netns", "list", check=False).stdout.split() if n.startswith(prefix)]
        names += [p.name.removesuffix(".sock").removesuffix(".pid") for p in Path("/run").glob(f"{prefix}*")
                  if p.suffix in (".sock", ".pid")]
        names = [n[len(prefix):] for n in names] + [p.name for p in (DATA_ROOT / self.name).glob("*") if p.is_dir()]
        found |= {n for n in names if n == "manager" or (n.startswith("worker") and n[6:].isdigit())}
        return sorted(found)

    def down(self) -> None:
        """Remove engines, containers, namespaces, links, data roots; from any partial state and any size."""
        present = self.present()
        nodes.unregister([self.node_name(node) for node in present])
        with concurrent.futures.ThreadPoolExecutor(len(present)) as pool:
            list(pool.map(self._stop_engine, present))
        teardown(self.name)  # the resolver, the namespaces (with the links in them), the state file
        for node in present:
            for path in (self.socket(node), self.pidfile(node)):
                Path(path).unlink(missing_ok=True)
            shutil.rmtree(self.exec_root(node), ignore_errors=True)
        shutil.rmtree(DATA_ROOT / self.name, ignore_errors=True)
        try:
            DATA_ROOT.rmdir()  # only when no other lab uses it
        except OSError:
            pass

    def _stop_engine(self, node: str) -> None:
        if self._answers(node):  # removing containers first spares dockerd's 10 s stop timeout per container
            client = self.client(node)
            try:
                for container in client.containers.list(all=True):
                    container.remove(force=True)
            except Exception:
                pass  # the engine goes down next anyway
            finally:
                client.close()
        ours = [f"{self.exec_root(node)}/", f"{self.exec_root(node)} ", f"{self.data_root(node)} "]
        tree = _children()
        engine = [int(p) for p in os.listdir("/proc") if p.isdigit() and any(o in _cmdline(int(p)) for o in ours)]
        family, todo = [], list(engine)
        while todo:  # dockerd, its containerd, the shims and the containers under them
            pid = todo.pop()
            family.append(pid)
            todo += tree.get(pid, [])
        namespace = f"/run/netns/{self.netns(node)}"
        if os.path.exists(namespace):
            family += [int(p) for p in _run("ip", "netns", "pids", self.netns(node), check=False).stdout.split()]
        _kill(sorted(set(family)), STOP_TIMEOUT)


class SwarmVxlanDropScenario(SwarmScenario):
    """The swarm with UDP 4789 dropped on worker2: its overlay endpoints vanish for the other nodes."""

    name = "swarm-vxlan"
    summary = "swarm whose worker2 drops UDP 4789 (VXLAN): cross-node overlay traffic to it dies, the rest works"
    expect = Expectation("vxlan")

    def break_it(self) -> None:
        _run("ip", "netns", "exec", self.netns("worker2"), "iptables", "-w", "-I", "INPUT", "-p", "udp", "--dport",
             "4789", "-j", "DROP", "-m", "comment", "--comment", f"netdoctor-lab:{self.name}")

    def up(self) -> list[LabTarget]:
        targets = super().up()
        return [LabTarget(self.container("manager"), ("--node", self.node_name("manager")))] + \
            [t for t in targets if t.spec == "--swarm"]


def _ipam(subnet: str):
    import docker.types

    return docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])


SCENARIOS = [SwarmScenario, SwarmVxlanDropScenario]
