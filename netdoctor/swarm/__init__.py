"""Diagnosing other engines with netdoctor's own image: every node of a Swarm (`check --swarm`) or a remote
engine (`check -H URL`, `--context NAME`), gathered into one run.

    cluster.py   this side: starts the agents (a global service, or one container), gathers, cleans up
    task.py      the Swarm task on each node: starts the node agent through its node's engine
    node.py      the node agent (alongside mode): diagnoses its engine's host and containers
    probe.py     one node's half of the node matrix (control and data plane to every other node)
    matrix.py    the node matrix from both halves, its findings and its table
    peers.py     --peer across the swarm: containers, tasks and services on other nodes
    protocol.py  the records the agents send back, and how they are read
    engines.py   -H / --context: which engine, and a docker SDK client for it
"""
