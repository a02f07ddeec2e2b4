"""Real broken topologies (Docker networks, netns, veth, bridges) for the tests, `netdoctor lab` and the demo."""
