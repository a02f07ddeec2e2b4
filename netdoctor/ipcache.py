"""IP addresses, networks and interfaces parsed once per process: checks and the firewall model ask about the same few
addresses thousands of times in a run over many targets (every rule a packet meets tests them), and
ipaddress parses in pure Python. The objects are immutable, so sharing them is safe. Bad input raises
ValueError as ipaddress does (not cached)."""

from __future__ import annotations

import functools
import ipaddress

address = functools.lru_cache(maxsize=4096)(ipaddress.ip_address)
network = functools.lru_cache(maxsize=4096)(functools.partial(ipaddress.ip_network, strict=False))
interface = functools.lru_cache(maxsize=4096)(ipaddress.ip_interface)
