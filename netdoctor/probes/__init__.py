"""Active probes: time-bounded, run from inside a target's namespace, aimed only at addresses that belong
to the target's own configuration (gateway, nameservers, peers) or that the user named."""
