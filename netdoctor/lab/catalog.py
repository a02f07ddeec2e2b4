"""Every lab scenario by name: the built-in modules here, plus the SCENARIOS lists of swarm.py and
macvlan.py when those modules are present (they are optional; a missing one is simply not listed)."""

from __future__ import annotations

import importlib

from netdoctor.lab.scenario import Scenario

BUILT_IN = ("healthy", "ip_forward", "mtu", "dns", "ports", "reachability", "icc", "forward_policy", "bridge_nf",
            "subnet_overlap")
OPTIONAL = ("swarm", "macvlan")


def scenarios() -> dict[str, Scenario]:
    found: dict[str, Scenario] = {}
    for module_name in BUILT_IN + OPTIONAL:
        qualified = f"netdoctor.lab.{module_name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if module_name in OPTIONAL and exc.name == qualified:
                continue
            raise
        for scenario in getattr(module, "SCENARIOS", ()):
            scenario = scenario() if isinstance(scenario, type) else scenario
            found[scenario.name] = scenario
    return found
