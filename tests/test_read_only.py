"""Read-only, proven: for every lab scenario, the network state of the host, of each target and of each host
namespace netdoctor is pointed at (links, addresses, routes, policy rules, net.* sysctls, iptables/ip6tables
and nftables rulesets without counters) is the same after a full run with probes as before it.

The real host is shared with other test runs, whose containers and networks come and go meanwhile. Such
churn is excused only where it is visibly someone else's: links that appeared or vanished (Docker's veth*/
br-* devices of other networks), routes and firewall lines that name those links or other containers'
addresses. Everything netdoctor could have changed on its own (global sysctls, the links and addresses that
were there before, the rules of our scenario, every namespace of ours) must be identical.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

import pytest

from netdoctor.lab import nodes
from netdoctor.lab.catalog import scenarios
from netdoctor.lab.scenario import LAB_LABEL, LabTarget
from netdoctor.lab.topology import exclusive
from tests.conftest import run_cli

pytestmark = pytest.mark.docker

SCENARIOS = scenarios()
# state the kernel changes by itself as traffic flows, never a setting: connection counts, carrier, lifetimes
VOLATILE_SYSCTLS = re.compile(r"^net\.netfilter\.nf_conntrack_(count|expect_count)\b|\.stable_secret\b")
# link attributes the kernel moves by itself: carrier, timers of the bridge's state machines, and limits it
# derives from a bridge's current ports
VOLATILE_LINK_KEYS = re.compile(r"^(operstate|linkmode|carrier_.*|stats(64)?|.*_timer|[gt]so_max_.*|gro_max_.*)$")
VOLATILE_FLAGS = {"LOWER_UP", "NO-CARRIER", "DORMANT", "M-DOWN"}
COUNTERS = re.compile(r"\[\d+:\d+\]")
DUMP_COMMENTS = re.compile(r"^# (Generated|Completed) ")


def _run(enter: list[str], *argv: str) -> str:
    done = subprocess.run([*enter, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 or argv[0] in ("iptables-legacy-save", "ip6tables-legacy-save"), \
        f"{' '.join([*enter, *argv])}: {done.stderr}"
    return done.stdout


def _settings(value):
    if isinstance(value, dict):
        return {k: _settings(v) for k, v in value.items() if not VOLATILE_LINK_KEYS.match(k)}
    return value


def _link_line(link: dict) -> str:
    kept = _settings(link)
    kept["flags"] = sorted(set(link.get("flags", [])) - VOLATILE_FLAGS)
    return json.dumps(kept, sort_keys=True)


def _address_lines(link: dict) -> list[str]:
    return [f"{link['ifname']} {a.get('local')}/{a.get('prefixlen')} {a.get('scope')} {a.get('label', '')}"
            + (" tentative" if a.get("tentative") else "") for a in link.get("addr_info", [])]


def _route_line(route: dict) -> str:
    return json.dumps({k: v for k, v in route.items() if k not in ("expires", "cache")}, sort_keys=True)


def snapshot(enter: list[str]) -> dict[str, list[str]]:
    """Every setting of one network namespace, as sorted lines per section. `enter`: the prefix that runs a
    tool in it ([] for our own, `nsenter --net=PATH`)."""
    links = json.loads(_run(enter, "ip", "-d", "-j", "link", "show"))
    addresses = json.loads(_run(enter, "ip", "-j", "addr", "show"))
    state = {
        "links": sorted(_link_line(link) for link in links),
        "addresses": sorted(line for link in addresses for line in _address_lines(link)),
        "routes": sorted(_route_line(r) for family in ("-4", "-6")
                         for r in json.loads(_run(enter, "ip", family, "-j", "route", "show", "table", "all") or "[]")),
        "rules": sorted(_route_line(r) for family in ("-4", "-6")
                        for r in json.loads(_run(enter, "ip", family, "-j", "rule", "show") or "[]")),
        "sysctls": sorted(line for line in _run(enter, "sysctl", "-a", "-e", "-r", r"^net\.").splitlines()
                          if not VOLATILE_SYSCTLS.search(line)),
    }
    for tool in ("iptables-save", "ip6tables-save", "iptables-legacy-save", "ip6tables-legacy-save"):
        if shutil.which(tool):
            state[tool] = sorted(COUNTERS.sub("", line) for line in _run(enter, tool).splitlines()
                                 if line and not DUMP_COMMENTS.match(line))
    if shutil.which("nft"):
        state["nft"] = sorted(line.strip() for line in _run(enter, "nft", "-s", "list", "ruleset").splitlines()
                              if line.strip())
    return state


def settled_snapshots(watched: dict[str, "Place"], seconds: float = 10) -> dict[str, dict[str, list[str]]]:
    """Snapshots once our namespaces stopped changing by themselves: a new link's IPv6 address stays
    tentative for a second of duplicate address detection before its route appears, and Docker finishes a
    container's rules after `run` returns. (The shared host never stops changing; its churn is excused.)"""
    deadline = time.monotonic() + seconds
    previous = {label: snapshot(p.enter) for label, p in watched.items()}
    while True:
        time.sleep(0.5)
        current = {label: snapshot(p.enter) for label, p in watched.items()}
        settled = all(not any(line.endswith(" tentative") for line in state["addresses"])
                      and (label == "host" or state == previous[label]) for label, state in current.items())
        if settled or time.monotonic() > deadline:
            return current
        previous = current


def differences(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    found = []
    for section in sorted(set(before) | set(after)):
        old, new = before.get(section, []), after.get(section, [])
        found += [f"{section}: - {line}" for line in old if line not in new]
        found += [f"{section}: + {line}" for line in new if line not in old]
    return found


@dataclass
class Place:
    """A namespace the test snapshots: the host's, a fake host's, a target's."""

    label: str
    path: str | None     # None: our own (the host)

    @property
    def enter(self) -> list[str]:
        return ["nsenter", f"--net={self.path}"] if self.path else []


def _container_ns(name: str, docker_host: str | None) -> str:
    import docker

    client = docker.DockerClient(base_url=docker_host) if docker_host else docker.from_env()
    try:
        return f"/proc/{client.api.inspect_container(name)['State']['Pid']}/ns/net"
    finally:
        client.close()


def places(target: LabTarget) -> list[Place]:
    """The target's namespace and the namespace its run treats as the host."""
    args = list(target.args)
    host, docker_host = None, None
    if "--host-netns" in args:
        host = args[args.index("--host-netns") + 1]
    if "--node" in args:
        entry = nodes.node(args[args.index("--node") + 1])
        host, docker_host = entry["netns"], entry["docker_host"]
    found = [Place("host", None)] if host is None else [Place(f"host namespace {host}", host if "/" in host else f"/run/netns/{host}")]
    if target.spec.startswith("netns:"):
        name = target.spec[len("netns:"):]
        found.append(Place(target.spec, name if "/" in name else f"/run/netns/{name}"))
    elif not target.spec.startswith("-"):
        found.append(Place(target.spec, _container_ns(target.spec.partition(":")[2] or target.spec, docker_host)))
    return found


def others_addresses(scenario: str) -> set:
    """The addresses of every container on the machine's engine that is not our scenario's."""
    import docker

    client = docker.from_env()
    try:
        return {ipaddress.ip_address(ip) for c in client.api.containers(all=True)
                if (c.get("Labels") or {}).get(LAB_LABEL) != scenario
                for n in ((c.get("NetworkSettings") or {}).get("Networks") or {}).values()
                for ip in (n.get("IPAddress"), n.get("GlobalIPv6Address")) if ip}
    finally:
        client.close()


DOCKER_VETH = re.compile(r"veth[0-9a-f]{7}")
INTERFACE_SYSCTL = re.compile(r"^net\.(?:ipv4|ipv6|mpls)\.(?:conf|neigh)\.(.+)\.[^.]+ =")


class Churn:
    """What other users of the machine's Docker engine did while we looked: links that came or went, and
    the addresses of their containers (from before and after)."""

    def __init__(self, before: dict[str, list[str]], after: dict[str, list[str]], addresses: set, ours: set[str]):
        # links that came or went (ours were there throughout: never in here), also as seen by the sysctl
        # dump, which is read a moment after the link dump: a foreign veth may appear in between; and the
        # host ends of other containers' veths (Docker's veth + 7 hex digits), caught in the middle of
        # being set up or torn down (a veth whose peer is moved into a container changes its attributes)
        links = lambda state: {json.loads(line)["ifname"] for line in state["links"]}  # noqa: E731
        sysctl_links = lambda state: {m.group(1).replace("/", ".") for line in state["sysctls"]  # noqa: E731
                                      if (m := INTERFACE_SYSCTL.match(line))}
        everything = links(before) | links(after) | sysctl_links(before) | sysctl_links(after)
        self.links = ((links(before) ^ links(after)) | (sysctl_links(before) ^ sysctl_links(after))
                      | {name for name in everything if DOCKER_VETH.fullmatch(name)}) - ours
        self.addresses = addresses

    def explains(self, difference: str) -> bool:
        section, _, line = difference.partition(": ")
        line = line[2:]  # "- " or "+ "
        if section == "links":
            return json.loads(line)["ifname"] in self.links
        if section == "sysctls":
            per_interface = INTERFACE_SYSCTL.match(line)
            return bool(per_interface) and per_interface.group(1).replace("/", ".") in self.links
        words = set(re.split(r"[\s\"',/=\[\]{}]+", line))
        if words & self.links:
            return True
        if section in ("addresses", "rules"):
            return False
        return any(_address(w.rsplit(":", 1)[0]) in self.addresses or _address(w) in self.addresses for w in words)


def our_host_links(host: dict[str, list[str]], targets: list[dict[str, list[str]]]) -> set[str]:
    """The host ends of our targets' veths (their peers' ifindex, as the target sees it) and the bridges
    they hang on: their settings must not change at all."""
    peers = {json.loads(line).get("link_index") for state in targets for line in state["links"]
             if "link_netnsid" in json.loads(line)}
    ours = {link["ifname"]: link for link in map(json.loads, host["links"]) if link.get("ifindex") in peers}
    return set(ours) | {link["master"] for link in ours.values() if link.get("master")}


def _address(word: str):
    try:
        return ipaddress.ip_address(word)
    except ValueError:
        return None


@pytest.fixture(scope="module", autouse=True)
def one_lab_user_at_a_time():
    with exclusive():
        yield


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_full_run_changes_nothing(name, test_image):
    scenario = SCENARIOS[name]
    targets = scenario.up()
    try:
        assert targets, f"{name} gave nothing to diagnose"
        watched = {p.label: p for t in targets for p in places(t)}
        others = others_addresses(name)
        before = settled_snapshots(watched)
        for target in targets:
            # every check, the scenario's own arguments, and a probe of the target's own loopback on top
            code, out, err = run_cli("check", target.spec, *target.args, "--probe", "127.0.0.1:9", "--timeout", "1",
                                     "--format", "json", "--fail-on", "never")
            assert code in (0, 3) and "Traceback" not in err, (target.command, code, err)
        after = {label: snapshot(p.enter) for label, p in watched.items()}
        others |= others_addresses(name)
    finally:
        scenario.down()
    for label in watched:
        changed = differences(before[label], after[label])
        if label == "host":
            ours = our_host_links(before[label], [before[other] for other in watched if other != label])
            churn = Churn(before[label], after[label], others, ours)
            changed = [d for d in changed if not churn.explains(d)]
        assert not changed, f"{name}: netdoctor changed {label}:\n" + "\n".join(changed[:40])
