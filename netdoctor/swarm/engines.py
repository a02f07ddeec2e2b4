"""Which engine `-H URL` / `--context NAME` mean, and a docker SDK client for it.

The run's own diagnosis talks to its engine through netdoctor/dockerapi.py (unix:// and tcp://); starting
containers and services on other engines, over ssh:// or with a context's TLS files, goes through the docker
SDK, here. Contexts are read from the Docker CLI's store ($DOCKER_CONFIG or ~/.docker):
contexts/meta/<sha256 of the name>/meta.json holds the endpoint, contexts/tls/<sha256>/docker/ its
ca.pem, cert.pem and key.pem. `default` is DOCKER_HOST (or the local socket), as for the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from netdoctor.errors import BadInput, CannotCheck

SCHEMES = ("unix", "tcp", "ssh", "http", "https")
SDK_TIMEOUT = 60


@dataclass(frozen=True)
class Remote:
    """An engine to run netdoctor's image on (or, with --swarm, the manager to start it through)."""

    url: str
    context: str = ""                 # the context it came from ("" for -H): labels its targets
    tls_dir: str = ""                 # ca.pem, cert.pem, key.pem of the context
    skip_tls_verify: bool = False

    @property
    def name(self) -> str:
        return self.context or self.url

    @property
    def socket_path(self) -> str:
        """The engine's own Unix socket, as that engine names it (a unix:// address), else ""."""
        parts = urlsplit(self.url)
        if parts.scheme != "unix":
            return ""
        return parts.path if not parts.netloc else f"/{parts.netloc}{parts.path}"  # unix://var/run/x.sock too


def _config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def check_url(url: str, where: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES or (scheme != "unix" and not urlsplit(url).hostname):
        raise BadInput(f"{where} {url!r} is not an engine address: unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST")
    return url


def from_context(name: str) -> Remote:
    if name == "default":
        return Remote(os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock", context=name)
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = _config_dir() / "contexts" / "meta" / digest / "meta.json"
    try:
        endpoint = json.loads(meta.read_text())["Endpoints"]["docker"]
    except FileNotFoundError:
        raise BadInput(f"--context {name!r}: no such Docker context (see `docker context ls`; looked in {meta.parent})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"--context {name!r}: {meta} is not a Docker context's endpoint ({exc})") from None
    tls = _config_dir() / "contexts" / "tls" / digest / "docker"
    return Remote(check_url(endpoint.get("Host") or "", f"--context {name}:"), context=name,
                  tls_dir=str(tls) if tls.is_dir() else "", skip_tls_verify=bool(endpoint.get("SkipTLSVerify")))


def remote(host: str | None, context: str | None) -> Remote | None:
    """-H URL or --context NAME (not both), validated; None when neither was given."""
    if host and context:
        raise BadInput("give -H/--host or --context, not both")
    if context:
        return from_context(context)
    if host:
        return Remote(check_url(host, "-H"))
    return None


def client(url: str | None, target: Remote | None = None):
    """A docker SDK client for `target`, else for `url` (a lab node's socket), else the environment's engine."""
    import docker
    import docker.tls
    import docker.utils

    try:
        if target is None:
            engine = (docker.DockerClient(base_url=url, version="auto", timeout=SDK_TIMEOUT) if url
                      else docker.from_env(version="auto", timeout=SDK_TIMEOUT))
        else:
            tls = None
            if not target.context and urlsplit(target.url).scheme in ("tcp", "https"):
                tls = docker.utils.kwargs_from_env().get("tls")  # -H: DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, as the CLI
            if target.tls_dir:
                files = {n: os.path.join(target.tls_dir, f"{n}.pem") for n in ("ca", "cert", "key")}
                tls = docker.tls.TLSConfig(client_cert=(files["cert"], files["key"]) if os.path.exists(files["cert"]) else None,
                                           ca_cert=files["ca"] if os.path.exists(files["ca"]) else None,
                                           verify=not target.skip_tls_verify and os.path.exists(files["ca"]))
            engine = docker.DockerClient(base_url=target.url, version="auto", timeout=SDK_TIMEOUT, tls=tls,
                                         use_ssh_client=target.url.startswith("ssh://"))
        engine.ping()
    except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
        where = target.name if target else (url or os.environ.get("DOCKER_HOST") or "the local engine")
        raise CannotCheck(f"the Docker engine at {where} is not reachable ({str(exc).splitlines()[0][:200]})") from None
    return engine
