"""How a :class:`~virtabs.spi.DomainSpec` becomes a container, and back (pure; no SDK import).

=========================  ================================================================================
``DomainSpec``             container
=========================  ================================================================================
``name``                   the container name
``os_type``                must be ``"exe"`` (an application container, as libvirt's LXC domains)
``memory_bytes``           ``HostConfig.Memory`` (hard limit)
``vcpus``                  ``HostConfig.NanoCpus = vcpus * 10**9`` (CPU bandwidth, like ``--cpus``)
``nics``                   none: ``--network none``; one NIC: ``--network <network>`` (``bridge``, ``host``,
                           a user network) with ``--mac-address`` when ``mac`` is set; more: refused
``disks``                  refused: a container has an image and mounts, not block disks
``uuid``                   the ``virtabs.uuid`` label (otherwise the UUID comes from the container ID)
``extra["docker"]``        ``image`` (required), ``command``, ``entrypoint`` (lists or strings), ``env``
                           (mapping), ``labels`` (mapping), ``hostname``, ``working_dir``, ``user``,
                           ``stop_signal``, ``volumes`` (mapping volume name or host path -> mount point)
=========================  ================================================================================
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from typing import Any

from virtabs.spi import DomainSpec, NicSpec, quote

__all__ = ["UUID_LABEL", "SpecError", "create_arguments", "spec_from_inspect", "vcpus_of"]

UUID_LABEL = "virtabs.uuid"
# HostConfig.NetworkMode is a network's name, or "container:NAME"; Podman also reads options after a
# colon ("bridge:ip=...,mac=..."), so nothing else may reach it.
_NETWORK_RE = re.compile(r"(?:container:)?[A-Za-z0-9][A-Za-z0-9_.-]*")
_KNOWN = (
    "image",
    "command",
    "entrypoint",
    "env",
    "labels",
    "hostname",
    "working_dir",
    "user",
    "stop_signal",
    "volumes",
)


class SpecError(ValueError):
    """A spec that cannot become a container (the driver raises InvalidArgumentError with the message)."""


def _command(name: str, key: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise SpecError(f"domain {quote(name)}: extra['docker'][{quote(key)}] must be a list of strings or a string")


def _str_map(name: str, key: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise SpecError(f"domain {quote(name)}: extra['docker'][{quote(key)}] must be a mapping of strings")
    return {k: str(v) for k, v in value.items()}


def create_arguments(spec: DomainSpec) -> dict[str, Any]:
    """Keyword arguments of ``APIClient.create_container``; ``host_config`` holds those of ``create_host_config``."""
    name = spec.name
    if spec.os_type != "exe":
        raise SpecError(f"domain {quote(name)}: containers are os_type 'exe' (got {quote(spec.os_type)})")
    if spec.disks:
        raise SpecError(
            f"domain {quote(name)}: containers have no block disks; mount volumes with extra['docker']['volumes']"
        )
    if len(spec.nics) > 1:
        raise SpecError(f"domain {quote(name)}: one network per container at creation (got {len(spec.nics)} NICs)")
    raw = spec.extra.get("docker")
    if not isinstance(raw, Mapping) or not isinstance(raw.get("image"), str) or not raw["image"]:
        raise SpecError(f"domain {quote(name)}: extra['docker']['image'] (the image to run) is required")
    unknown = sorted(set(raw) - set(_KNOWN))
    if unknown:
        raise SpecError(f"domain {quote(name)}: unknown extra['docker'] key(s) {', '.join(unknown)} (known: {_KNOWN})")
    labels = _str_map(name, "labels", raw.get("labels"))
    for key in labels:
        # Podman's compat API turns the labels into "key=value" strings and splits them again at the first '='
        if not key or "=" in key:
            raise SpecError(f"domain {quote(name)}: the label name {quote(key)} cannot be empty or hold '='")
    if UUID_LABEL in labels:
        raise SpecError(f"domain {quote(name)}: the label {UUID_LABEL} is virtabs' own (set the spec's uuid instead)")
    if spec.uuid is not None:
        labels[UUID_LABEL] = spec.uuid
    volumes = _str_map(name, "volumes", raw.get("volumes"))
    for source, target in volumes.items():
        if not target.startswith("/"):
            raise SpecError(f"domain {quote(name)}: the mount point {quote(target)} must be absolute")
        # the Engine API takes a bind as one "source:target:mode" string (HostConfig.Binds): a colon in
        # either part would move the split, e.g. make a part of the path the mode
        for part in (source, target):
            if ":" in part or not part:
                raise SpecError(
                    f"domain {quote(name)}: the volume {quote(part)} cannot hold ':' (a bind is source:target:mode)"
                )
    if spec.nics and not _NETWORK_RE.fullmatch(spec.nics[0].network):
        raise SpecError(
            f"domain {quote(name)}: network {quote(spec.nics[0].network)} is not a Docker network name "
            "(letters, digits, '_', '.', '-'; or container:NAME)"
        )
    host_config: dict[str, Any] = {
        "mem_limit": spec.memory_bytes,
        "nano_cpus": spec.vcpus * 10**9,
        "network_mode": spec.nics[0].network if spec.nics else "none",
    }
    if volumes:
        host_config["binds"] = {source: {"bind": target, "mode": "rw"} for source, target in volumes.items()}
    args: dict[str, Any] = {
        "image": raw["image"],
        "name": name,
        "command": _command(name, "command", raw.get("command")),
        "labels": labels,
        "host_config": host_config,
    }
    entrypoint = _command(name, "entrypoint", raw.get("entrypoint"))
    if entrypoint is not None:
        args["entrypoint"] = entrypoint
    env = _str_map(name, "env", raw.get("env"))
    for key in env:
        # the Engine API takes the environment as "NAME=value" strings: the first '=' ends the name
        if not key or "=" in key:
            raise SpecError(
                f"domain {quote(name)}: the environment variable name {quote(key)} cannot be empty or hold '='"
            )
    if env:
        args["environment"] = env
    for key in ("hostname", "working_dir", "user", "stop_signal"):
        if raw.get(key) is not None:
            args[key] = str(raw[key])
    if spec.nics and spec.nics[0].mac:
        args["mac_address"] = spec.nics[0].mac
    if volumes:
        args["volumes"] = list(volumes.values())
    return args


def vcpus_of(host_config: Mapping[str, Any]) -> int | None:
    """CPUs from ``NanoCpus`` or ``CpuQuota/CpuPeriod`` (rounded up); None when unlimited."""
    nano = int(host_config.get("NanoCpus") or 0)
    if nano:
        return max(1, math.ceil(nano / 1e9))
    quota, period = int(host_config.get("CpuQuota") or 0), int(host_config.get("CpuPeriod") or 0)
    if quota > 0 and period > 0:
        return max(1, math.ceil(quota / period))
    return None


def spec_from_inspect(data: Mapping[str, Any], uuid: str, host_memory: int, host_cpus: int) -> DomainSpec:
    """The spec of an inspected container (``GET /containers/<id>/json``)."""
    config = data.get("Config") or {}
    hc = data.get("HostConfig") or {}
    extra: dict[str, Any] = {"image": config.get("Image")}
    if config.get("Cmd"):
        extra["command"] = list(config["Cmd"])
    if config.get("Entrypoint"):
        entry = config["Entrypoint"]
        extra["entrypoint"] = [entry] if isinstance(entry, str) else list(entry)
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if k != UUID_LABEL}
    if labels:
        extra["labels"] = labels
    mounts = {
        str(m.get("Name") or m.get("Source")): str(m.get("Destination"))
        for m in data.get("Mounts") or []
        if m.get("Destination")
    }
    if mounts:
        extra["volumes"] = mounts
    mode = str(hc.get("NetworkMode") or "none")
    nics = () if mode in ("none", "") else (NicSpec(network=mode, model="veth"),)
    return DomainSpec(
        name=str(data.get("Name", "")).lstrip("/"),
        memory_bytes=int(hc.get("Memory") or 0) or host_memory,
        vcpus=vcpus_of(hc) or host_cpus,
        nics=nics,
        uuid=uuid,
        os_type="exe",
        extra={"docker": extra},
    )
