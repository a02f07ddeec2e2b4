"""Docker's own rules, on real engines: Debian 12's dockerd 20.10 (userland proxy on) and Debian unstable's
28.5 (userland-proxy false, IPv6 network), each in a network namespace of its own (tests/engines.py), so
their rules can be flushed and foreign chains and tables added without touching the shared engine or the
host. Every fault is proven with a real connection first (from the client namespace to the published
port, or from the container to the client); then netdoctor must name its cause; healthy engines stay quiet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netdoctor.lab import fakehost
from tests import engines
from tests.conftest import sh, unique
from tests.engines import CLIENT_IP, CLIENT_PORT, UPLINK_IP, UPLINK_IP6, Listener, connects, http_answers

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
        """`check("reachability", "--probe", "H:P")`: check ids, then any other options."""
        first = next((i for i, c in enumerate(checks) if c.startswith("--")), len(checks))
        return self.run_netdoctor(target or self.container, "--checks", ",".join(checks[:first]), *checks[first:],
                                  *self.engine.netdoctor_args())

    def netns(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.engine.in_netns(*command, check=check)

    def client_reaches_published(self, address: str = UPLINK_IP) -> bool:
        return http_answers(f"/run/netns/{self.engine.client_netns}", address, PUBLISHED)

    def container_reaches_client(self) -> bool:
        return connects(self.engine.netns_of(self.container), engines.CLIENT_IP, CLIENT_PORT)


@pytest.fixture(scope="module", params=["20.10", "28"])
def engine(request):
    options = () if request.param == "20.10" else ("--userland-proxy=false",)
    with engines.started(request.param, *options) as built:
        six = ("--ipv6", "--subnet", SUBNET6) if request.param == "28" else ()
        built.docker("network", "create", "-o", f"com.docker.network.bridge.name={BRIDGE}", *six, "ndfw")
        built.run("c1", "--network", "ndfw", "-p", f"{PUBLISHED}:{INSIDE}")
        listener = Listener(built.client_netns, "0.0.0.0", CLIENT_PORT)
        try:
            yield built
        finally:
            listener.close()


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
    # one judgement for both checks: a port docker-proxy still relays only warns in firewall too
    assert summary["status"] == missing["status"]
    assert f"DNAT {PUBLISHED}/tcp -> c1:{INSIDE}" in summary["evidence"]["missing"]["ndfw"]
    assert (f"DNAT {PUBLISHED}/tcp -> c1:{INSIDE}" in summary["evidence"]["relayed_by_docker_proxy"]) is proxy


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
    """A healthy Tailscale host: a peer behind "tailscale0" routes the container's subnet to the host. Docker 28
    drops it in the raw table (before Tailscale's ts-forward ACCEPT); 20.10 lets it reach the published container
    port. Tailscale's generic accept of what it marked says nothing about Docker's networks: info, never a
    warning on every container of the host; a rule that names tailscale0 does say so."""
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
        assert reached and direct == [] and loud(report) == []
        return
    assert not reached
    [finding] = direct
    assert finding["status"] == "info" and not finding["evidence"]["intent_seen"]
    assert loud(report) == [], loud(report)
    assert finding["evidence"]["rule"] == f"-A PREROUTING -d {host.ip}/32 ! -i {BRIDGE} -j DROP"
    assert any("trusted_host_interfaces=tailscale0" in c for c in finding["fix"]["commands"])
    host.netns("iptables", "-I", "DOCKER-USER", "-i", "tailscale0", "-j", "ACCEPT")   # someone means peers to come in
    [finding] = [f for f in host.check("forward_policy").findings
                 if f["id"].startswith(f"forward_policy/firewall-drop:direct:tailscale0:{BRIDGE}@")]
    assert finding["status"] == "warn" and finding["evidence"]["intent_seen"]


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


# --- the probe's way back, and counters that other traffic moves ------------------------------------------

def probe_finding(report) -> dict:
    [probe] = [f for f in report.of("reachability") if f["evidence"].get("probe")]
    return probe


def run_fix(commands: list[str], netns: str) -> None:
    """Apply netdoctor's printed fix, only if every command is confined to the engine's namespace."""
    assert all(c.startswith(f"ip netns exec {netns} ") for c in commands), commands
    for command in commands:
        subprocess.run(command, shell=True, check=True, capture_output=True)


FLOOD = ("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nend=time.time()+60\n"
         "while time.time()<end:\n s.sendto(b'x',('10.98.0.2',9)); time.sleep(0.002)")


def forward_policy_counter(host) -> int:
    line = next(l for l in host.netns("iptables-save", "-c", "-t", "filter").stdout.splitlines() if l.startswith(":FORWARD"))
    return int(line.split("[")[1].split(":")[0])


def test_other_traffic_on_forwards_policy_is_not_blamed_for_the_far_ends_own_drop(host):
    """The far end drops port 9001 itself while other traffic (the client sending to a network routed through
    the host that no rule accepts) hits FORWARD's policy DROP during the probe: that counter moves, but a rule of
    Docker's accepts the probe both ways, so the policy is no suspect and the loss is beyond the host."""
    engine = host.engine
    client = engine.client_netns
    sh("ip", "-n", engine.name, "link", "add", "side0", "type", "veth", "peer", "name", "side1")
    flood = None
    try:
        sh("ip", "-n", engine.name, "addr", "add", "10.98.0.1/24", "dev", "side0")
        sh("ip", "-n", engine.name, "link", "set", "side0", "up")
        sh("ip", "-n", client, "route", "add", "10.98.0.0/24", "via", UPLINK_IP)
        sh("ip", "netns", "exec", client, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9001", "-j", "DROP")
        assert not connects(engine.netns_of(host.container), CLIENT_IP, 9001)
        flood = subprocess.Popen(["ip", "netns", "exec", client, sys.executable, "-c", FLOOD])
        before = forward_policy_counter(host)
        report = host.check("reachability", "--probe", f"{CLIENT_IP}:9001", "--timeout", "1")
        assert forward_policy_counter(host) - before >= 10        # the other traffic really hit the policy meanwhile
    finally:
        if flood is not None:
            flood.kill()
            flood.wait()
        sh("ip", "netns", "exec", client, "iptables", "-D", "INPUT", "-p", "tcp", "--dport", "9001", "-j", "DROP", check=False)
        sh("ip", "-n", client, "route", "del", "10.98.0.0/24", check=False)
        sh("ip", "-n", engine.name, "link", "del", "side0", check=False)
    probe = probe_finding(report)
    assert probe["evidence"]["layer"] == "beyond_host", probe
    assert probe["evidence"]["counters_moved"] == [] and probe["fix"]["commands"] == []
    assert probe["evidence"]["host_forward_verdict"].endswith("-j ACCEPT")


def test_a_drop_of_the_replies_is_named_not_blamed_beyond_the_host(host):
    """`-I DOCKER-USER -i uplink0 -j DROP` lets the SYN out and drops the SYN-ACK: the walk back names it, and
    forward_policy's finding about the same rule is the probe's root cause."""
    host.netns("iptables", "-I", "DOCKER-USER", "-i", "uplink0", "-j", "DROP")
    assert not host.container_reaches_client()
    report = host.check("reachability", "forward_policy", "--probe", f"{CLIENT_IP}:{CLIENT_PORT}", "--timeout", "1")
    probe = probe_finding(report)
    assert probe["evidence"]["layer"] == "firewall" and probe["title"].endswith("Broken at: firewall")
    assert probe["evidence"]["host_replies_verdict"] == "iptables-nft filter DOCKER-USER: -A DOCKER-USER -i uplink0 -j DROP"
    assert probe["evidence"]["counters_moved"][0].startswith("iptables-nft filter DOCKER-USER: -A DOCKER-USER -i uplink0")
    assert probe["caused_by"] == keyed(report, f"firewall-drop:replies:{BRIDGE}")["id"]
    delete, exempt = probe["fix"]["commands"]
    assert delete == f"ip netns exec {host.engine.name} iptables -D DOCKER-USER -i uplink0 -j DROP"
    assert exempt == (f"ip netns exec {host.engine.name} iptables -I DOCKER-USER -s {CLIENT_IP} -d {host.ip} -p tcp "
                      f"--sport {CLIENT_PORT} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
    run_fix([exempt], host.engine.name)                       # keep the admin's rule, exempt only this connection
    assert host.container_reaches_client()


def test_docker_user_rule_dropping_the_replies_of_a_published_port(host):
    """`-I DOCKER-USER -i BRIDGE -j DROP`: requests to the published port get in, the container's answers do not."""
    host.netns("iptables", "-I", "DOCKER-USER", "-i", BRIDGE, "-j", "DROP")
    assert not host.client_reaches_published()
    drop = keyed(host.check("ports"), f"firewall-drop:published:{PUBLISHED}/tcp")
    assert drop["status"] == "fail" and drop["evidence"]["direction"] == "replies" and "replies" in drop["title"]
    assert drop["evidence"]["rule"] == f"-A DOCKER-USER -i {BRIDGE} -j DROP"
    delete, exempt = drop["fix"]["commands"]
    assert exempt == (f"ip netns exec {host.engine.name} iptables -I DOCKER-USER -s {host.ip} -p tcp --sport {INSIDE} "
                      "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
    run_fix([exempt], host.engine.name)
    assert host.client_reaches_published()


# --- healthy layouts that must stay quiet ------------------------------------------------------------------

def test_two_networks_with_containers_on_each_are_quiet(host):
    """Docker 28 writes a raw-table DROP for every container: none of them is about another network's traffic
    to the world (N warnings per container, N² with --all, before)."""
    engine = host.engine
    engine.docker("network", "create", "-o", "com.docker.network.bridge.name=brfw2", "ndfw2")
    try:
        engine.run("c2", "--network", "ndfw2")
        engine.run("c3", "--network", "ndfw")
        report = host.run_netdoctor("c1", "c2", "c3", "--checks", "forward_policy,ports,firewall",
                                    *engine.netdoctor_args())
        assert loud(report) == [], loud(report)
        assert keyed(report, "forwarded:brfw2")["status"] == "pass"
    finally:
        engine.docker("rm", "-f", "c2", "c3", check=False)
        engine.docker("network", "rm", "ndfw2", check=False)


def test_firewalld_with_the_docker_zone_is_quiet(host):
    """firewalld with Docker's bridges in its 'docker' zone (target ACCEPT), as Docker 20.10+ sets it up."""
    host.netns("nft", "-f", str(FIXTURES / "firewalld-docker.nft"))
    assert host.client_reaches_published() and host.container_reaches_client()
    report = host.check("forward_policy", "ports", "firewall")
    assert loud(report) == [], loud(report)
    assert keyed(report, f"forwarded:{BRIDGE}")["evidence"]["outgoing_accepted_by"].startswith("nftables inet firewalld")


# --- the one fix builder: what it prints works, and prefers restarting Docker when Docker's rules are gone --

def test_a_probe_through_a_flushed_forward_chain_is_fixed_by_restarting_docker(host):
    """`iptables -F FORWARD`: nothing jumps to DOCKER-USER or Docker's chains any more. An ACCEPT inserted into
    DOCKER-USER (what netdoctor used to print) is never reached; restarting Docker is the fix."""
    host.netns("iptables", "-F", "FORWARD")
    assert not host.container_reaches_client()
    report = host.check("reachability", "forward_policy", "--probe", f"{CLIENT_IP}:{CLIENT_PORT}", "--timeout", "1")
    probe = probe_finding(report)
    assert probe["evidence"]["layer"] == "firewall" and probe["fix"]["commands"] == ["sudo systemctl restart docker"]
    assert keyed(report, f"docker-rules-missing:forward:{BRIDGE}")["status"] == "fail"
    host.netns("iptables", "-I", "DOCKER-USER", "-s", host.ip, "-d", CLIENT_IP, "-p", "tcp", "--dport", str(CLIENT_PORT),
               "-j", "ACCEPT")
    assert not host.container_reaches_client()


def test_published_port_after_a_flushed_filter_table_is_fixed_by_restarting_docker(host):
    """`iptables -F`: FORWARD's policy decides the requests to the published port. Accepting the port in FORWARD
    (what netdoctor used to print) opens it to every forwarded destination and still fails: the replies die too."""
    host.netns("iptables", "-F")
    assert not host.client_reaches_published()
    drop = keyed(host.check("ports"), f"firewall-drop:published:{PUBLISHED}/tcp")
    assert drop["evidence"]["decided_by"] == "FORWARD policy DROP"
    assert drop["fix"]["commands"] == ["sudo systemctl restart docker"]
    host.netns("iptables", "-I", "FORWARD", "-p", "tcp", "--dport", str(INSIDE), "-j", "ACCEPT")
    assert not host.client_reaches_published()


def test_users_own_nftables_forward_policy_is_fixed_in_that_table(host):
    """A hand-written `table inet filter` whose forward policy drops: Docker never touches it, so restarting
    Docker is no fix; accepts in that chain, requests and replies, are."""
    host.engine.in_netns("nft", "-f", "-", input="table inet filter {\n chain forward {\n  type filter hook forward "
                                                 "priority 0; policy drop;\n }\n}\n")
    assert not host.client_reaches_published() and not host.container_reaches_client()
    report = host.check("ports", "forward_policy")
    drop = keyed(report, f"firewall-drop:published:{PUBLISHED}/tcp")
    assert drop["evidence"]["where"] == "nftables inet filter forward" and drop["evidence"]["policy"] == "drop"
    assert drop["fix"]["commands"] == [
        f"ip netns exec {host.engine.name} nft insert rule inet filter forward ip daddr {host.ip} tcp dport {INSIDE} accept",
        f"ip netns exec {host.engine.name} nft insert rule inet filter forward ip saddr {host.ip} tcp sport {INSIDE} "
        "ct state established,related accept"]
    for finding in loud(report):
        run_fix(finding["fix"]["commands"], host.engine.name)
    assert host.client_reaches_published() and host.container_reaches_client()
    assert loud(host.check("ports", "forward_policy")) == []


def test_policy_fix_for_a_bridge_of_the_hosts_own_keeps_dockers_isolation(host, make_netns, lab_netns, netdoctor):
    """A bridge that is not Docker's (a VM's) on a Docker host: Docker's FORWARD policy DROP stops it. The fix
    accepts it towards the uplink and its replies, in DOCKER-USER; `-i BRIDGE -j ACCEPT` there (the old fix)
    would also open every container port to it on 20.10-27, past Docker's own rules."""
    engine = host.engine
    engine.run("c4", "--network", "ndfw", command="sh -c 'httpd -p 81; httpd -f -p 80'")
    guest = make_netns("vm")
    try:
        address = engine.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "c4").stdout.strip()
        fakehost.bridge(lab_netns, engine.name, "10.97.0.1/24", name="virbr9")
        fakehost.attach(lab_netns, engine.name, "virbr9", guest, "10.97.0.2/24", gateway="10.97.0.1", host_end="vnet9")
        host.netns("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.97.0.0/24", "-o", "uplink0", "-j", "MASQUERADE")
        vm = f"/run/netns/{guest}"
        assert not connects(vm, CLIENT_IP, CLIENT_PORT)
        report = netdoctor(f"netns:{guest}", "--checks", "forward_policy", *engine.netdoctor_args())
        out = keyed(report, "firewall-drop:outgoing:virbr9")
        assert out["evidence"]["decided_by"] == "FORWARD policy DROP"
        assert out["fix"]["commands"] == [
            f"ip netns exec {engine.name} iptables -I DOCKER-USER -i virbr9 -o uplink0 -j ACCEPT",
            f"ip netns exec {engine.name} iptables -I DOCKER-USER -i uplink0 -o virbr9 -m conntrack --ctstate "
            "RELATED,ESTABLISHED -j ACCEPT"]
        run_fix(out["fix"]["commands"], engine.name)
        assert connects(vm, CLIENT_IP, CLIENT_PORT)
        assert not connects(vm, address, 81)                     # Docker's rules still decide about its containers
        assert netdoctor(f"netns:{guest}", "--checks", "forward_policy", *engine.netdoctor_args()).statuses("forward_policy") == {"pass"}
        host.netns("iptables", "-I", "DOCKER-USER", "-i", "virbr9", "-j", "ACCEPT")     # the old fix
        assert connects(vm, address, 81) is (host.version == "20.10")    # 28's raw table still drops it
    finally:
        engine.docker("rm", "-f", "c4", check=False)
        sh("ip", "-n", engine.name, "link", "del", "virbr9", check=False)


def test_embedded_dns_servfail_is_walked_to_its_upstream(host):
    """firewalld without the docker zone rejects, in INPUT, the queries Docker's embedded DNS forwards to the
    container's --dns server on the host: 127.0.0.11 answers SERVFAIL at once (Docker 28; 20.10's lets the query
    time out), and the walk to that upstream names firewalld's reject and its fix."""
    host.netns("nft", "-f", str(FIXTURES / "firewalld.nft"))
    report = host.check("dns")
    [server] = [f for f in report.of("dns") if f["id"].startswith("dns/nameserver-silent:127.0.0.11@")]
    assert {q["outcome"] for q in server["evidence"]["queries"]} == {"timeout" if host.version == "20.10" else "servfail"}
    assert server["evidence"]["layer"] == "firewall" and server["title"].endswith("Broken at: firewall")
    assert server["evidence"]["host_input_verdict"] == \
        "nftables inet firewalld filter_INPUT: reject with icmpx admin-prohibited"
    assert f"sudo firewall-cmd --permanent --zone=docker --add-interface={BRIDGE}" in server["fix"]["commands"]


# --- dockerd --iptables=false: the rules are the user's ------------------------------------------------------

@pytest.fixture(scope="module", params=["20.10-flag", "28-daemon.json"])
def plain_engine(request):
    """An engine that writes no IPv4 rules: --iptables=false on its command line (20.10) or in daemon.json (28)."""
    version, how = request.param.split("-", 1)
    config = engines.DATA / f"{unique('daemon')}.json"
    try:
        engines.DATA.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"iptables": False}))
        with engines.started(version, "--iptables=false" if how == "flag" else f"--config-file={config}") as built:
            built.run("c1", "-p", f"{PUBLISHED}:{INSIDE}")
            listener = Listener(built.client_netns, "0.0.0.0", CLIENT_PORT)
            try:
                yield built
            finally:
                listener.close()
    finally:
        config.unlink(missing_ok=True)


@pytest.fixture
def plain(plain_engine, netdoctor, monkeypatch):
    """The --iptables=false engine with the user's own rules for docker0, as the ufw + Docker guides write them."""
    monkeypatch.setenv("DOCKER_HOST", plain_engine.docker_host)
    saved = plain_engine.rules()
    subnet = json.loads(plain_engine.docker("network", "inspect", "bridge").stdout)[0]["IPAM"]["Config"][0]["Subnet"]
    for rule in (["-P", "FORWARD", "DROP"], ["-A", "FORWARD", "-i", "docker0", "-o", "uplink0", "-j", "ACCEPT"],
                 ["-A", "FORWARD", "-i", "uplink0", "-o", "docker0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
                  "-j", "ACCEPT"],
                 ["-t", "nat", "-A", "POSTROUTING", "-s", subnet, "-o", "uplink0", "-j", "MASQUERADE"]):
        plain_engine.in_netns("iptables", *rule)
    yield Host(plain_engine, netdoctor)
    plain_engine.restore(saved)


def test_iptables_false_with_the_users_own_rules_is_healthy(plain):
    """No Docker chain at all, by design: nothing is "gone", nothing to restart; the user's rules forward and NAT
    the container, and docker-proxy serves the published port."""
    assert "DOCKER" not in plain.netns("iptables-save").stdout
    assert plain.container_reaches_client() and plain.client_reaches_published()
    report = plain.check("forward_policy", "ports", "firewall", "reachability")
    assert loud(report) == [], loud(report)
    off = keyed(report, "docker-rules-off")
    assert off["status"] == "info" and "iptables=false" in off["evidence"]["docker_rules"]
    # 20.10 was given --iptables=false, 28 a --config-file whose "iptables": false is read from dockerd's root
    assert ("command line" if plain.version == "20.10" else ".json of dockerd") in off["evidence"]["docker_rules"]
    assert keyed(report, f"no-dnat:{PUBLISHED}/tcp")["status"] == "info"
    assert keyed(report, "forwarded:docker0")["evidence"]["outgoing_accepted_by"] == \
        "iptables-nft filter FORWARD: -A FORWARD -i docker0 -o uplink0 -j ACCEPT"


def test_iptables_false_without_forward_accepts_is_the_users_to_fix(plain):
    plain.netns("iptables", "-F", "FORWARD")
    assert not plain.container_reaches_client()
    report = plain.check("forward_policy", "firewall")
    out = keyed(report, "firewall-drop:outgoing:docker0")
    assert out["status"] == "fail" and "sudo systemctl restart docker" not in out["fix"]["commands"]
    assert not [f for f in report.findings if "docker-rules-missing" in f["id"]]
    assert [f["status"] for f in report.of("firewall") if f["status"] in ("warn", "fail")] == []
    run_fix(out["fix"]["commands"], plain.engine.name)
    assert plain.container_reaches_client()


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
