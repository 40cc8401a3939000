#!/usr/bin/env python3
"""Capture the engines' own answers the network unit tests parse (run as root from the repository root).

Starts a private dockerd and a private podman (tests/docker_helpers.py), makes on each a bridge network with
an allocation range (``vtcapnat``, 10.251.7.0/24, range .128/25), an internal one (``vtcapint``,
10.251.8.0/24), a running container on the first (``vtcap-run``) and a stopped one on the second
(``vtcap-stop``), and writes the raw response bodies, byte for byte, to this directory:

  docker-networks.json    GET /v1.41/networks                  (dockerd)
  docker-containers.json  GET /v1.41/containers/json?all=1     (dockerd)
  libpod-networks.json    GET /v4.0.0/libpod/networks/json     (podman)
  podman-containers.json  GET /v1.41/containers/json?all=1     (podman)

    sudo .venv/bin/python backends/docker/tests/data/capture_networks.py
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from docker_helpers import SLEEPER, private_dockerd, private_podman  # noqa: E402


def capture(kind: str) -> None:
    with private_dockerd() if kind == "docker" else private_podman() as engine:
        client = engine.client()
        api = client.api
        try:
            for name, cidr, extra, internal in (
                ("vtcapnat", "10.251.7.0/24", {"IPRange": "10.251.7.128/25"}, False),
                ("vtcapint", "10.251.8.0/24", {}, True),
            ):
                pool = {"Subnet": cidr, "Gateway": cidr.replace(".0/24", ".1"), **extra}
                api.create_network(
                    name,
                    driver="bridge",
                    internal=internal,
                    ipam={"Driver": "default", "Config": [pool]},
                    options={"com.docker.network.bridge.name": name},
                )
            for name, network in (("vtcap-run", "vtcapnat"), ("vtcap-stop", "vtcapint")):
                hc = api.create_host_config(network_mode=network)
                api.create_container(engine.image, command=list(SLEEPER), name=name, host_config=hc)
            api.start("vtcap-run")
            base = api.base_url
            networks = f"{base}/v4.0.0/libpod/networks/json" if kind == "podman" else f"{base}/v1.41/networks"
            prefix = "libpod" if kind == "podman" else "docker"
            for path, url in ((f"{prefix}-networks.json", networks), (f"{kind}-containers.json",
                              f"{base}/v1.41/containers/json?all=1")):  # fmt: skip
                response = api._get(url)
                response.raise_for_status()
                (HERE / path).write_bytes(response.content)
        finally:
            engine.remove_all_containers()
            for name in ("vtcapnat", "vtcapint"):
                with contextlib.suppress(Exception):
                    api.remove_network(name)
            client.close()


if __name__ == "__main__":
    capture("docker")
    capture("podman")
