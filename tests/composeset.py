"""A small Compose-like project built with the Engine API, labelled as Compose labels its objects, with
one real fault: `web` is also on a network whose MTU (1500) is above the fake host's uplink (1400), while
`db` sits only on the project's 1400 network. An unrelated container runs beside it to prove selection.

Import `compose_set` into a test module to use it as a fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from netdoctor.lab.fakehost import uplink
from tests.conftest import unique

COMPOSE_FILE = """\
services:
  web:
    image: netdoctor-test/busybox:latest
    networks: [front, back]
  db:
    image: netdoctor-test/busybox:latest
    networks: [back]
networks:
  front: {}
  back:
    driver_opts:
      com.docker.network.driver.mtu: "1400"
"""


@dataclass
class ComposeSet:
    project: str
    web: str           # container names
    db: str
    outsider: str
    front: str         # network names
    back: str
    host_netns: str    # fake host: forwarding on, uplink MTU 1400
    workdir: Path      # holds compose.yaml; tests chdir here
    compose_file: Path

    def label(self, name: str) -> str:
        return f"container:{name}"


@pytest.fixture
def compose_set(make_network, make_container, make_netns, lab_netns, tmp_path, monkeypatch) -> ComposeSet:
    project = unique("proj")
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(COMPOSE_FILE)
    host = make_netns("host", forwarding=True)
    uplink(lab_netns, host, mtu=1400)

    def labels(service: str | None = None, network: str | None = None) -> dict[str, str]:
        found = {"com.docker.compose.project": project}
        if service:
            found.update({"com.docker.compose.service": service, "com.docker.compose.container-number": "1",
                          "com.docker.compose.project.config_files": str(compose_file),
                          "com.docker.compose.project.working_dir": str(tmp_path)})
        if network:
            found["com.docker.compose.network"] = network
        return found

    front = make_network("front", labels=labels(network="front"))
    back = make_network("back", labels=labels(network="back"), options={"com.docker.network.driver.mtu": "1400"})
    web = make_container(name=f"{project}-web-1", network=front.name, labels=labels("web"))
    back.connect(web)
    db = make_container(name=f"{project}-db-1", network=back.name, labels=labels("db"))
    outsider = make_container("outsider", network=front.name)
    monkeypatch.chdir(tmp_path)  # config discovery starts here, and report paths are relative to it
    return ComposeSet(project, web.name, db.name, outsider.name, front.name, back.name, host, tmp_path, compose_file)
