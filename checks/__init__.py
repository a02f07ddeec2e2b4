"""Built-in checks, installed as `netdoctor.checks`: one module per check id.

A check is a function marked with @netdoctor.registry.check that takes a CheckContext and yields
Findings. It reads facts from ctx (never fetching, parsing or entering namespaces itself); the runner
verifies its `needs` first and turns exceptions into `error` findings.
"""
