"""Docker's own rules, on real engines: Debian 12's dockerd 20.10 (userland proxy on) and Debian unstable's
28.5 (userland-proxy false, IPv6 network), each in a network namespace of its own (tests/engines.py), so
their rules can be flushed and foreign chains and tables added without touching the shared engine or the
host. Every fault is proven with a real connection first (from the client namespace to the published
port, or from the container to the client); then netdoctor must name its cause; healthy engines stay quiet.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import engines
from tests.conftest import sh, unique
from tests.engines import CLIENT_PORT, UPLINK_IP, UPLINK_IP6, Listener, connects, http_answers

pytestmark = pytest.mark.docker

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "firewall"
BRIDGE = "brfw"
PUBLISHED, INSIDE = 8080, 80
SUBNET6 = "2001:db8:77::/64"


class Host:
    """An engine with one network (bridge brfw) and one container c1 publishing 8080->80."""

    def __init__(self, engine: engines.Engine, run):
        self.engine, self.run_netdoctor = engine, run
        self.version = engine.version
        self.container = "c1"
        inspect = engine.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}}{{end}}",
                                self.container).stdout.split()
        self.ip, self.ip6 = inspect[0], (inspect[1] if len(inspect) > 1 else "")

    def check(self, *checks: str, target: str | None = None):
        return self.run_netdoctor(target or self.container, "--checks", ",".join(checks), *self.engine.netdoctor_args())

    def netns(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.engine.in_netns(*command, check=check)

    def client_reaches_published(self, address: str = UPLINK_IP) -> bool:
        return http_answers(f"/run/netns/{self.engine.client_netns}", address, PUBLISHED)

    def container_reaches_client(self) -> bool:
        return connects(self.engine.netns_of(self.container), engines.CLIENT_IP, CLIENT_PORT)


@pytest.fixture(scope="module", params=["20.10", "28"])
def engine(request):
    created: list[str] = []

    def make_netns(prefix: str) -> str:
        name = unique(prefix)
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        created.append(name)
        return name

    options = () if request.param == "20.10" else ("--userland-proxy=false",)
    built = None
    try:
        built = engines.build(make_netns, request.param, *options)
        six = ("--ipv6", "--subnet", SUBNET6) if request.param == "28" else ()
        built.docker("network", "create", "-o", f"com.docker.network.bridge.name={BRIDGE}", *six, "ndfw")
        built.run("c1", "--network", "ndfw", "-p", f"{PUBLISHED}:{INSIDE}")
        listener = Listener(built.client_netns, "0.0.0.0", CLIENT_PORT)
        yield built
        listener.close()
    finally:
        if built is not None:
            built.stop()
        for name in created:
            sh("ip", "netns", "delete", name, check=False)


@pytest.fixture
def host(engine, netdoctor, monkeypatch):
    """The engine's host, its rules restored after the test whatever it did to them."""
    monkeypatch.setenv("DOCKER_HOST", engine.docker_host)
    saved = engine.rules()
    yield Host(engine, netdoctor)
    engine.restore(saved)


def loud(report, *checks: str) -> list[dict]:
    return [f for f in report.findings if f["status"] in ("warn", "fail", "error") and (not checks or f["check"] in checks)]


def keyed(report, key: str) -> dict:
    [finding] = [f for f in report.findings if f["id"].split("/", 1)[1].split("@")[0] == key]
    return finding


def test_healthy_engine_is_quiet(host):
    assert host.client_reaches_published() and host.container_reaches_client()
    report = host.check("forward_policy", "ports", "firewall")
    assert loud(report) == [], loud(report)
    published = keyed(report, f"published:{PUBLISHED}/tcp")
    assert published["evidence"]["dnat"][0].endswith(f"--to-destination {host.ip}:{INSIDE}")
    if host.version == "28":
        assert host.client_reaches_published(UPLINK_IP6)
        assert keyed(report, f"published6:{PUBLISHED}/tcp")["status"] == "pass"
        assert keyed(report, f"forwarded6:{BRIDGE}")["status"] == "pass"
    firewall = keyed(report, "firewall-read")
    assert firewall["evidence"]["engine_version"].startswith(host.version)


def test_flushed_dnat_of_a_published_port(host):
    """`iptables -t nat -F DOCKER`: with the userland proxy the port still answers (client addresses lost),
    without it the port is dead. Today's symptom that went unreported on both engines."""
    host.netns("iptables", "-t", "nat", "-F", "DOCKER")
    proxy = host.version == "20.10"
    assert host.client_reaches_published() is proxy
    report = host.check("ports", "firewall")
    missing = keyed(report, f"docker-rules-missing:dnat:{PUBLISHED}/tcp")
    assert missing["status"] == ("warn" if proxy else "fail")
    assert missing["evidence"]["userland_proxy"].startswith("docker-proxy") is proxy
    assert "sudo systemctl restart docker" in missing["fix"]["commands"]
    summary = keyed(report, "docker-rules-missing")
    assert summary["status"] == "fail" and f"DNAT {PUBLISHED}/tcp -> c1:{INSIDE}" in summary["evidence"]["missing"]["ndfw"]


def test_wiped_filter_table_is_named_with_its_fix(host):
    """`iptables -F` (what a firewall script or a firewalld reload with the iptables backend does): Docker's
    FORWARD policy DROP stays, its accepts are gone."""
    host.netns("iptables", "-F")
    assert not host.container_reaches_client()
    report = host.check("forward_policy", "firewall")
    gone = keyed(report, f"docker-rules-missing:forward:{BRIDGE}")
    assert gone["status"] == "fail" and "restart docker" in gone["title"]
    assert gone["evidence"]["outgoing_decided_by"] == "iptables-nft filter FORWARD: FORWARD policy DROP"
    assert "iptables -F" in gone["evidence"]["probable_cause"]
    assert gone["fix"]["commands"] == ["sudo systemctl restart docker"]
    assert keyed(report, "docker-rules-missing")["status"] == "fail"


def test_flushed_nat_table_loses_the_masquerade(host):
    """`iptables -t nat -F`: the container's packets leave with its private address and the answers never find
    their way back (the client, like the internet, has no route to the container's subnet)."""
    host.netns("iptables", "-t", "nat", "-F")
    assert not host.container_reaches_client()
    report = host.check("reachability", "firewall", target=host.container)
    nat = keyed(report, "masquerade-missing")
    assert nat["status"] == "fail" and "sudo systemctl restart docker" in nat["fix"]["commands"]
    summary = keyed(report, "docker-rules-missing")
    subnet = host.ip.rsplit(".", 1)[0] + ".0/24"
    assert f"MASQUERADE for {subnet}" in summary["evidence"]["missing"]["ndfw"]


def test_docker_user_rule_blocking_a_published_port_drops_the_requests(host):
    host.netns("iptables", "-I", "DOCKER-USER", "-p", "tcp", "--dport", str(INSIDE), "-j", "DROP")
    assert not host.client_reaches_published()
    report = host.check("ports")
    drop = keyed(report, f"firewall-drop:published:{PUBLISHED}/tcp")
    assert drop["status"] == "fail" and drop["evidence"]["chain"] == "DOCKER-USER"
    assert "drops the requests" in drop["detail"] and "replies" not in drop["title"]
    delete, exempt = drop["fix"]["commands"]
    assert exempt == f"ip netns exec {host.engine.name} iptables -I DOCKER-USER -d {host.ip} -p tcp --dport {INSIDE} -j RETURN"
    subprocess.run(exempt, shell=True, check=True)          # netdoctor's own fix, confined to the engine's namespace
    assert host.client_reaches_published()
    assert loud(host.check("ports")) == []


def test_firewalld_zone_without_the_bridge_rejects_its_traffic(host):
    """A firewalld-style `inet firewalld` table (no docker zone binding): its forward chain rejects what
    Docker's iptables rules accept, since every base chain of the hook sees the packet."""
    host.netns("nft", "-f", str(FIXTURES / "firewalld.nft"))
    assert not host.container_reaches_client()
    report = host.check("forward_policy")
    drop = keyed(report, f"firewall-drop:outgoing:{BRIDGE}")
    assert drop["evidence"]["where"] == "nftables inet firewalld filter_FORWARD"
    assert drop["evidence"]["owner"] == "firewalld" and drop["evidence"]["rule"] == "reject with icmpx admin-prohibited"
    assert f"sudo firewall-cmd --permanent --zone=docker --add-interface={BRIDGE}" in drop["fix"]["commands"]


def test_ufw_chain_dropping_before_dockers_accepts(host):
    """ufw's chains jumped to before Docker's (ufw enabled after dockerd started) with a `route deny`."""
    for rule in (["-N", "ufw-before-forward"], ["-N", "ufw-user-forward"], ["-I", "FORWARD", "1", "-j", "ufw-before-forward"],
                 ["-A", "ufw-before-forward", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
                 ["-A", "ufw-before-forward", "-j", "ufw-user-forward"],
                 ["-A", "ufw-user-forward", "-o", "uplink0", "-j", "DROP"]):
        host.netns("iptables", *rule)
    assert not host.container_reaches_client()
    drop = keyed(host.check("forward_policy"), f"firewall-drop:outgoing:{BRIDGE}")
    assert drop["evidence"]["rule"] == "-A ufw-user-forward -o uplink0 -j DROP" and drop["evidence"]["owner"] == "ufw"
    assert drop["fix"]["commands"] == [f"sudo ufw route allow in on {BRIDGE}"]


def test_direct_routing_from_a_vpn_peer(host, make_netns):
    """A peer behind "tailscale0" routes the container's subnet to the host: Docker 28 drops it in the raw
    table (before Tailscale's ts-forward ACCEPT); 20.10 lets it reach the published container port."""
    peer = make_netns("ts")
    sh("ip", "-n", host.engine.name, "link", "add", "tailscale0", "type", "veth", "peer", "name", "eth0", "netns", peer)
    sh("ip", "-n", host.engine.name, "addr", "add", "100.64.0.1/24", "dev", "tailscale0")
    sh("ip", "-n", host.engine.name, "link", "set", "tailscale0", "up")
    sh("ip", "-n", peer, "addr", "add", "100.64.0.2/24", "dev", "eth0")
    sh("ip", "-n", peer, "link", "set", "eth0", "up")
    subnet = host.ip.rsplit(".", 1)[0] + ".0/24"
    sh("ip", "-n", peer, "route", "add", subnet, "via", "100.64.0.1")
    for rule in (["-N", "ts-forward"], ["-I", "FORWARD", "1", "-j", "ts-forward"],
                 ["-A", "ts-forward", "-i", "tailscale0", "-j", "MARK", "--set-xmark", "0x40000/0xff0000"],
                 ["-A", "ts-forward", "-m", "mark", "--mark", "0x40000/0xff0000", "-j", "ACCEPT"]):
        host.netns("iptables", *rule)
    reached = http_answers(f"/run/netns/{peer}", host.ip, INSIDE)
    report = host.check("forward_policy")
    direct = [f for f in report.findings if f["id"].startswith(f"forward_policy/firewall-drop:direct:tailscale0:{BRIDGE}@")]
    if host.version == "20.10":
        assert reached and direct == []
        return
    assert not reached
    [finding] = direct
    assert finding["status"] == "warn" and finding["evidence"]["intent_seen"]          # Tailscale's ACCEPT shows intent
    assert finding["evidence"]["rule"] == f"-A PREROUTING -d {host.ip}/32 ! -i {BRIDGE} -j DROP"
    assert any("trusted_host_interfaces=tailscale0" in c for c in finding["fix"]["commands"])


def test_unpublished_port_drop_for_a_routed_network(host, make_netns):
    """Docker 28's routed gateway mode: no NAT and no raw DROP, but `DOCKER ! -i BR -o BR -j DROP` still stops
    direct access to ports that are not published; peers on a VPN meet it. 20.10 has no such mode."""
    if host.version == "20.10":
        return
    engine = host.engine
    engine.docker("network", "create", "-o", "com.docker.network.bridge.gateway_mode_ipv4=routed",
                  "-o", "com.docker.network.bridge.name=brrt", "ndrt")
    try:
        engine.run("c2", "--network", "ndrt", "-p", f"{PUBLISHED + 1}:{INSIDE}", command="sh -c 'httpd -p 81; httpd -f -p 80'")
        address = engine.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "c2").stdout.strip()
        peer = make_netns("wg")
        sh("ip", "-n", engine.name, "link", "add", "wg0", "type", "veth", "peer", "name", "eth0", "netns", peer)
        sh("ip", "-n", engine.name, "addr", "add", "10.66.0.1/24", "dev", "wg0")
        sh("ip", "-n", engine.name, "link", "set", "wg0", "up")
        sh("ip", "-n", peer, "addr", "add", "10.66.0.2/24", "dev", "eth0")
        sh("ip", "-n", peer, "link", "set", "eth0", "up")
        sh("ip", "-n", peer, "route", "add", address.rsplit(".", 1)[0] + ".0/24", "via", "10.66.0.1")
        host.netns("iptables", "-I", "DOCKER-USER", "-i", "wg0", "-j", "RETURN")   # someone means wg0 peers to pass
        assert http_answers(f"/run/netns/{peer}", address, INSIDE)               # published: routed straight in
        assert not http_answers(f"/run/netns/{peer}", address, 81)               # not published: dropped
        report = host.check("forward_policy", target="c2")
        [finding] = [f for f in report.findings if f["id"].startswith("forward_policy/firewall-drop:direct:wg0:brrt@")]
        assert finding["status"] == "warn" and finding["evidence"]["gateway_mode"] == "routed"
        assert finding["evidence"]["rule"] == "-A DOCKER ! -i brrt -o brrt -j DROP" and finding["evidence"]["ports"] == [81]
    finally:
        engine.docker("rm", "-f", "c2", check=False)
        engine.docker("network", "rm", "ndrt", check=False)


def test_ipv6_forward_drop_and_lost_dnat(host):
    if host.version == "20.10":  # 20.10 writes no ip6tables rules without --ip6tables: nothing to judge or break
        assert not any("6:" in f["id"] for f in loud(host.check("forward_policy", "ports")))
        return
    host.netns("ip6tables", "-I", "DOCKER-USER", "-o", "uplink0", "-j", "DROP")
    host.netns("ip6tables", "-t", "nat", "-F", "DOCKER")
    assert not host.client_reaches_published(UPLINK_IP6) and host.client_reaches_published()
    report = host.check("forward_policy", "ports")
    drop = keyed(report, f"firewall-drop:outgoing6:{BRIDGE}")
    assert drop["evidence"]["where"] == "ip6tables-nft filter DOCKER-USER" and drop["evidence"]["ip_version"] == "IPv6"
    assert drop["fix"]["commands"][0] == f"ip netns exec {host.engine.name} ip6tables -D DOCKER-USER -o uplink0 -j DROP"
    assert keyed(report, f"docker-rules-missing:dnat6:{PUBLISHED}/tcp")["status"] == "fail"
    assert keyed(report, f"forwarded:{BRIDGE}")["status"] == "pass"                     # IPv4 is untouched


def test_engine_script_fetches_28_and_refuses_what_it_does_not_know():
    """scripts/engine.sh fetch (what CI's switch to 28.5 starts with), never the switch itself: it would stop
    the shared engine. Idempotent: the second run only relinks."""
    from tests.conftest import ROOT

    for _ in range(2):
        done = sh("bash", str(ROOT / "scripts/engine.sh"), "fetch")
        bin_dir = Path(done.stdout.strip().splitlines()[-1])
    assert bin_dir == engines.ENGINE_DIR / "28" / "bin"
    for tool in ("dockerd", "containerd", "containerd-shim-runc-v2", "docker-proxy", "runc"):
        assert (bin_dir / tool).exists(), tool
    assert "version 28." in sh(str(bin_dir / "dockerd"), "--version").stdout
    assert sh(str(bin_dir / "containerd"), "--version").stdout.split()[2].startswith("2.")
    assert sh("bash", str(ROOT / "scripts/engine.sh"), "switch-everything", check=False).returncode == 2
