"""The Docker engine itself: its version, API version and firewall backend.

Which rules an engine writes depends on its release (20.10-27, 28.x, 29) and, from 29, on its firewall
backend (`"firewall-backend": "nftables"` in daemon.json). The Engine API says which backend it uses in
Info's `FirewallBackend` (API >= 1.49, i.e. 28.2 and later); older engines only ever wrote iptables rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

IPTABLES, NFTABLES = "iptables", "nftables"


@dataclass(frozen=True)
class EngineFacts:
    version: str                  # "28.5.2+dfsg4", "20.10.24+dfsg1"
    api_version: str              # "1.51"
    firewall_driver: str = ""     # Info.FirewallBackend.Driver: iptables, nftables, iptables+firewalld ("": not said)

    @property
    def release(self) -> tuple[int, int]:
        """(major, minor); (0, 0) when the version string says nothing usable."""
        found = re.match(r"v?(\d+)\.(\d+)", self.version)
        return (int(found[1]), int(found[2])) if found else (0, 0)

    @property
    def backend(self) -> str:
        """Where this engine writes its rules: nftables (29+, when configured) or iptables (every other engine)."""
        return NFTABLES if NFTABLES in self.firewall_driver else IPTABLES

    @property
    def with_firewalld(self) -> bool:
        """The engine talks to firewalld (it puts its bridges in firewalld's docker zone)."""
        return "firewalld" in self.firewall_driver

    @property
    def layout(self) -> str:
        """Which of Docker's iptables layouts this engine writes: "20.10" (up to 27), "28" or "29"."""
        major = self.release[0]
        return "29" if major >= 29 else "28" if major == 28 else "20.10"

    def label(self) -> str:
        return f"Docker {self.version} (API {self.api_version}, firewall backend {self.firewall_driver or self.backend})"

    def to_evidence(self) -> dict:
        return {"engine_version": self.version, "api_version": self.api_version, "firewall_backend": self.backend,
                **({"firewall_driver": self.firewall_driver} if self.firewall_driver else {})}


def engine_from_api(info: dict, version: dict) -> EngineFacts:
    backend = info.get("FirewallBackend") or {}
    return EngineFacts(version=str(info.get("ServerVersion") or version.get("Version") or ""),
                       api_version=str(version.get("ApiVersion") or ""),
                       firewall_driver=str(backend.get("Driver") or "") if isinstance(backend, dict) else "")
