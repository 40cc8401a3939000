"""The Docker driver: containers of a Docker (or Podman) engine through the docker SDK's low-level API.

URIs: ``docker:///``, ``docker+unix:///path/to/docker.sock`` (also podman's API socket) and
``docker+tcp://host:2376/`` (TLS, verified by default); see :mod:`virtabs_docker._uri`. The SDK is imported
when a connection opens, never when this module is imported.

A container is a domain (see :mod:`virtabs_docker._spec` for how a DomainSpec maps). Its UUID is its
``virtabs.uuid`` label when it has one (a spec with a UUID sets it), else the first 128 bits of its container
ID. Listing and the inventory are ONE engine call (``GET /containers/json?all=1``) whatever the number of
containers; the SDK's high-level ``containers.list()`` would inspect each container. The networks are two
(the engine's network list and that container listing; see :mod:`virtabs_docker._networks`). The engine's
named volumes are one storage pool, ``volumes``, of directory volumes (see :mod:`virtabs_docker._volumes`):
its volume listing is one call (``GET /volumes``).
"""

from __future__ import annotations

import os
import threading
import uuid as _uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, ClassVar

from virtabs.spi import (
    DIRECTORY_FORMAT,
    URI,
    Capabilities,
    Capability,
    ConnectError,
    ConnectOptions,
    DiskInfo,
    DomainInfo,
    DomainRecord,
    DomainRef,
    DomainSpec,
    DomainState,
    DomainStatus,
    Driver,
    DriverUnavailableError,
    HostInfo,
    InvalidArgumentError,
    LifecycleEvent,
    LifecycleEventType,
    NetworkInfo,
    NicInfo,
    NoDomainError,
    NoStoragePoolError,
    NoStorageVolumeError,
    OperationFailedError,
    OperationInvalidError,
    OperationTimeoutError,
    PoolInfo,
    VirtabsError,
    VolumeInfo,
    describe_tls_failure,
    quote,
)

from ._networks import container_networks, docker_network_records, libpod_network_records
from ._spec import UUID_LABEL, SpecError, create_arguments, spec_from_inspect, vcpus_of
from ._uri import UriError, endpoint_for
from ._volumes import CREATE_TOKEN_LABEL, POOL_NAME, pool_info, volume_info, volume_name_problem

__all__ = ["API_VERSION", "DockerDriver", "container_uuid", "docker_state"]

#: The Engine API version spoken: Docker 20.10 and later, Podman 3 and later serve it. A fixed version (not
#: "auto") also spares one round trip per connection.
API_VERSION = "1.41"
#: The libpod API version of Podman's own network list (its network schema since Podman 4.0).
LIBPOD_API_VERSION = "4.0.0"
INSTALL_HINT = "pip install virtabs-docker (the docker SDK); a Docker or Podman engine to talk to"

_STATES: Mapping[str, DomainState] = {
    "created": DomainState.SHUTOFF,
    "running": DomainState.RUNNING,
    "paused": DomainState.PAUSED,
    "restarting": DomainState.RUNNING,
    "removing": DomainState.SHUTDOWN,
    "exited": DomainState.SHUTOFF,
    "stopped": DomainState.SHUTOFF,  # podman
    "configured": DomainState.SHUTOFF,  # podman
    "dead": DomainState.CRASHED,
}

_EVENTS: Mapping[str, LifecycleEventType] = {
    "create": LifecycleEventType.DEFINED,
    "destroy": LifecycleEventType.UNDEFINED,
    "remove": LifecycleEventType.UNDEFINED,  # podman
    "start": LifecycleEventType.STARTED,
    "die": LifecycleEventType.STOPPED,
    "pause": LifecycleEventType.SUSPENDED,
    "unpause": LifecycleEventType.RESUMED,
}


def docker_state(native: str) -> DomainState:
    """The engine's container state word (``running``, ``paused``, ``exited`` ...) as a DomainState."""
    return _STATES.get(native.lower(), DomainState.NOSTATE)


def container_uuid(container_id: str, labels: Mapping[str, str] | None) -> str:
    """The domain UUID of a container: its ``virtabs.uuid`` label, else the first 32 hex digits of its ID."""
    label = (labels or {}).get(UUID_LABEL)
    if label:
        try:
            return str(_uuid.UUID(label))
        except ValueError:
            pass
    return str(_uuid.UUID(container_id[:32]))


def _name(entry: Mapping[str, Any]) -> str:
    names = entry.get("Names") or [""]
    return str(names[0]).lstrip("/")


class DockerDriver(Driver):
    """Containers of a Docker or Podman engine (``docker:///``, ``docker+unix:///sock``, ``docker+tcp://h:2376/``).

    Define (create from an image and a command), start, shutdown (the container's stop signal), destroy
    (SIGKILL), reboot (restart), suspend/resume (pause/unpause), undefine (remove; volumes are kept), events
    from the engine's event stream. Listing and inventory are one engine call. The named volumes are the pool
    ``volumes`` (list, look up, create, delete; no resize: a named volume has no size). No block jobs, no
    snapshots (``docker commit`` keeps neither memory nor volumes).
    """

    name: ClassVar[str] = "docker"
    description: ClassVar[str] = "Docker and Podman containers through the docker SDK (low-level API)"
    capabilities: ClassVar[Capabilities] = Capabilities.of(
        Capability.DOMAIN_DEFINE,
        Capability.DOMAIN_START,
        Capability.DOMAIN_SHUTDOWN,
        Capability.DOMAIN_DESTROY,
        Capability.DOMAIN_REBOOT,
        Capability.DOMAIN_SUSPEND,
        Capability.EVENTS,
        Capability.NETWORK,
        Capability.STORAGE_POOL,
        Capability.STORAGE_VOLUME,
        notes={
            Capability.DOMAIN_REBOOT: "docker restart: stop (stop signal, then SIGKILL) and start",
            Capability.DOMAIN_SUSPEND: "docker pause (cgroup freezer)",
            Capability.EVENTS: "the engine's event stream (GET /events)",
            Capability.NETWORK: "the engine's networks (Podman: libpod's list) and the container listing: 2 calls",
            Capability.STORAGE_POOL: "the named volumes as the pool 'volumes' of directory volumes (format 'dir', "
            "no size); listing: 1 call (GET /volumes)",
            Capability.STORAGE_VOLUME: "docker volume create / rm (a volume in use is refused: 409); no resize, "
            "a named volume has no size",
        },
    )
    uri_examples: ClassVar[tuple[str, ...]] = (
        "docker:///",
        "docker+unix:///run/podman/podman.sock",
        "docker+tcp://docker.example.com:2376/",
    )
    install_hint: ClassVar[str] = INSTALL_HINT

    def __init__(self, uri: URI, options: ConnectOptions) -> None:
        super().__init__(uri, options)
        try:
            endpoint = endpoint_for(uri.transport, uri.host, uri.port, uri.path, uri.params, os.environ)
        except UriError as exc:
            raise InvalidArgumentError(str(exc)) from None
        try:
            import docker  # type: ignore[import-untyped]
            import docker.errors  # type: ignore[import-untyped]
            import requests.exceptions
        except ImportError as exc:
            raise DriverUnavailableError(f"the docker driver needs the docker SDK: {INSTALL_HINT}") from exc
        self._docker: Any = docker
        self._not_found: type[BaseException] = docker.errors.NotFound
        self._api_error: type[BaseException] = docker.errors.APIError
        self._conn_errors: tuple[type[BaseException], ...] = (
            requests.exceptions.ConnectionError,
            docker.errors.DockerException,
        )
        self._timeout_errors: tuple[type[BaseException], ...] = (requests.exceptions.Timeout,)
        self._endpoint = endpoint
        self._timeout = int(options.timeout or 60)
        self._where_host = endpoint.base_url.split("://", 1)[-1].rstrip("/")
        self._where = (
            "the engine" if endpoint.base_url.startswith("unix://") else f"the engine at {uri.host or 'DOCKER_HOST'}"
        )
        try:
            self._api: Any = self._client()
            version = self._api.version()
        except VirtabsError:
            raise
        except self._timeout_errors:
            raise OperationTimeoutError(
                f"docker: {self._where} did not answer within {self._timeout} s (the connection's timeout)"
            ) from None
        except Exception as exc:
            tls = describe_tls_failure(exc, self._where_host)
            if tls is not None:
                raise ConnectError(f"docker: {self._where}: {tls}") from None
            raise ConnectError(f"docker: cannot reach {self._where}: {self._describe(exc)}") from None
        components = [str(c.get("Name", "")) for c in version.get("Components") or []]
        self._engine = "podman" if any("podman" in c.lower() for c in components) else "docker"
        self._engine_version = str(version.get("Version", ""))
        self._host: dict[str, Any] | None = None
        self._volumes_dir: str | None = None
        self._events_lock = threading.Lock()
        self._event_thread: threading.Thread | None = None
        self._event_stream: Any = None
        self._event_client: Any = None

    def _client(self) -> Any:
        docker = self._docker
        ep = self._endpoint
        if ep.from_env:
            kwargs = docker.utils.kwargs_from_env()
            return docker.APIClient(version=API_VERSION, timeout=self._timeout, **kwargs)
        tls: Any = False
        if ep.tls:
            cert = (ep.tls_cert, ep.tls_key) if ep.tls_cert and ep.tls_key else None
            tls = docker.tls.TLSConfig(
                client_cert=cert, ca_cert=ep.tls_ca, verify=ep.tls_ca if ep.tls_verify else False
            )
        client = docker.APIClient(base_url=ep.base_url, version=API_VERSION, timeout=self._timeout, tls=tls)
        if ep.tls:
            # requests lets $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE override the session's CA: the URI's CA must win.
            client.trust_env = False
        return client

    def connection_capabilities(self) -> Capabilities:
        """The class's, without ``network`` on Podman before 4.0 (no libpod network list in today's schema)."""
        caps = type(self).capabilities
        if self._engine == "podman" and _major(self._engine_version) < 4:
            return caps.without(
                Capability.NETWORK, reason=f"Podman {self._engine_version}: libpod's network list needs Podman 4"
            )
        return caps

    # --- errors -------------------------------------------------------------------------------------

    @staticmethod
    def _describe(exc: BaseException) -> str:
        explanation = getattr(exc, "explanation", None)
        if explanation:
            return str(explanation.decode() if isinstance(explanation, bytes) else explanation)
        return str(exc) or type(exc).__name__

    @contextmanager
    def _errors(
        self, what: str, name: str | None = None, missing: type[VirtabsError] = NoDomainError
    ) -> Iterator[None]:
        """Translate the SDK's exceptions: 404 of ``name`` -> ``missing`` (a domain: NoDomainError; a volume:
        NoStorageVolumeError), 409 -> OperationInvalidError."""
        try:
            yield
        except VirtabsError:
            raise
        except self._not_found as exc:
            if name is not None:
                noun = "storage volume" if missing is NoStorageVolumeError else "domain"
                raise missing(f"{noun} {quote(name)} not found") from None
            raise OperationFailedError(f"{what}: {self._describe(exc)}") from None
        except self._api_error as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            cls = OperationInvalidError if status == 409 else OperationFailedError
            raise cls(f"{what}: {self._describe(exc)}") from None
        except self._timeout_errors as exc:
            raise OperationTimeoutError(f"{what}: {self._describe(exc)}") from None
        except self._conn_errors as exc:
            raise ConnectError(f"{what}: lost {self._where}: {self._describe(exc)}") from None
        except Exception as exc:  # anything else the SDK or requests raise (a body that is not JSON ...)
            raise OperationFailedError(f"{what}: {self._describe(exc)}") from None

    # --- helpers ------------------------------------------------------------------------------------

    def _inspect(self, dom: DomainRef) -> dict[str, Any]:
        with self._errors(f"inspect of domain {quote(dom.name)}", dom.name):
            data: dict[str, Any] = self._api.inspect_container(dom.name)
        if container_uuid(data["Id"], (data.get("Config") or {}).get("Labels")) != dom.uuid:
            raise NoDomainError(f"domain {quote(dom.name)} (uuid {dom.uuid}) not found: the name now has another UUID")
        return data

    def _list(self) -> list[dict[str, Any]]:
        with self._errors("listing of the containers"):
            return list(self._api.containers(all=True))

    def _host_facts(self) -> dict[str, Any]:
        if self._host is None:
            with self._errors("docker info"):
                self._host = dict(self._api.info())
        return self._host

    @staticmethod
    def _native_state(data: Mapping[str, Any]) -> str:
        state = data.get("State") or {}
        return str(state.get("Status") or ("running" if state.get("Running") else "exited"))

    # --- host ---------------------------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        """The engine's host (``docker info``)."""
        info = self._host_facts()
        return HostInfo(
            hostname=str(info.get("Name") or "localhost"),
            hypervisor=self._engine,
            hypervisor_version=self._engine_version,
            cpus=int(info.get("NCPU") or 1),
            memory_bytes=int(info.get("MemTotal") or 1),
            arch=str(info.get("Architecture") or "x86_64"),
        )

    # --- reads --------------------------------------------------------------------------------------

    def list_domains(self) -> list[DomainRef]:
        """Every container, running or not: one ``GET /containers/json?all=1``."""
        return [DomainRef(_name(c), container_uuid(c["Id"], c.get("Labels"))) for c in self._list()]

    def lookup_domain(self, name_or_uuid: str) -> DomainRef:
        """By name: one inspect; by UUID: one listing."""
        if "/" not in name_or_uuid:
            try:
                with self._errors(f"lookup of domain {quote(name_or_uuid)}", name_or_uuid):
                    data = self._api.inspect_container(name_or_uuid)
                if str(data.get("Name", "")).lstrip("/") == name_or_uuid:
                    return DomainRef(name_or_uuid, container_uuid(data["Id"], (data.get("Config") or {}).get("Labels")))
            except NoDomainError:
                pass
        return super().lookup_domain(name_or_uuid)

    def domain_info(self, dom: DomainRef) -> DomainInfo:
        """State and limits from an inspect; memory and CPU use from one stats sample while it runs.

        The sample costs about a second on Docker 20.10, whose stats collector ticks once a second
        (``one-shot`` or not); Podman answers at once. :meth:`domain_status` reads the state alone.
        """
        data = self._inspect(dom)
        native = self._native_state(data)
        state = docker_state(native)
        host = self._host_facts()
        hc = data.get("HostConfig") or {}
        max_memory = int(hc.get("Memory") or 0) or int(host.get("MemTotal") or 1)
        memory, cpu_ns = max_memory, 0
        if state.is_active:
            stats = self._stats(dom, data["Id"])
            if stats is None:  # it stopped between the inspect and the sample: report it as it is now
                data = self._inspect(dom)
                native = self._native_state(data)
                state = docker_state(native)
            else:
                mem = (stats.get("memory_stats") or {}).get("usage")
                if mem:
                    memory = int(mem)
                cpu_ns = int(((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)
        return DomainInfo(
            name=dom.name,
            uuid=dom.uuid,
            state=state,
            native_state=native,
            vcpus=vcpus_of(hc) or int(host.get("NCPU") or 1),
            memory_bytes=memory,
            max_memory_bytes=max_memory,
            cpu_time_ns=cpu_ns,
        )

    def _stats(self, dom: DomainRef, container_id: str) -> dict[str, Any] | None:
        """One stats sample, or None when the container is no longer running (Podman then answers an empty body)."""
        try:
            with self._errors(f"stats of domain {quote(dom.name)}", dom.name):
                stats = self._api.stats(container_id, stream=False, one_shot=True)
        except (OperationFailedError, OperationInvalidError):
            if docker_state(self._native_state(self._inspect(dom))).is_active:
                raise
            return None
        return stats if isinstance(stats, dict) else None

    def domain_status(self, dom: DomainRef) -> DomainStatus:
        """The state from one inspect (no stats sample: Docker's takes about a second); no block jobs."""
        return DomainStatus(docker_state(self._native_state(self._inspect(dom))))

    def domain_spec(self, dom: DomainRef) -> DomainSpec:
        """The definition read back from an inspect."""
        data = self._inspect(dom)
        host = self._host_facts()
        return spec_from_inspect(data, dom.uuid, int(host.get("MemTotal") or 1), int(host.get("NCPU") or 1))

    def disks(self, dom: DomainRef) -> list[DiskInfo]:
        """None: a container has an image and mounts (in ``domain_spec().extra``), not block disks."""
        self._inspect(dom)
        return []

    def nics(self, dom: DomainRef) -> list[NicInfo]:
        """The networks the container is attached to, with addresses while it runs."""
        data = self._inspect(dom)
        return _nics((data.get("NetworkSettings") or {}).get("Networks"))

    def inventory(self) -> list[DomainRecord]:
        """Every container from the same single listing call.

        The listing carries no limits, so ``vcpus`` and ``memory_bytes`` are None (with the reason in
        ``field_errors``); ``domain_info`` has them per container.
        """
        missing = "not in the engine's bulk listing (GET /containers/json); see domain_info"
        records = []
        for c in self._list():
            native = str(c.get("State") or "")
            records.append(
                DomainRecord(
                    name=_name(c),
                    uuid=container_uuid(c["Id"], c.get("Labels")),
                    state=docker_state(native),
                    native_state=native,
                    vcpus=None,
                    memory_bytes=None,
                    os_type="exe",
                    autostart=None,
                    nics=_nics((c.get("NetworkSettings") or {}).get("Networks")),
                    extra={
                        "engine": self._engine,
                        "id": str(c["Id"])[:12],
                        "image": c.get("Image"),
                        "command": c.get("Command"),
                        "status": c.get("Status"),
                        "mounts": [m.get("Destination") for m in c.get("Mounts") or []],
                    },
                    field_errors={"vcpus": missing, "memory_bytes": missing},
                )
            )
        return records

    # --- networks -----------------------------------------------------------------------------------

    def list_networks(self) -> list[NetworkInfo]:
        """Every network of the engine with the containers on it: two engine calls whatever their numbers.

        Docker: ``GET /networks`` and ``GET /containers/json?all=1``. Podman: libpod's
        ``GET /libpod/networks/json`` (its compatible list renames the default network and has no bridge
        device) and the same container listing.
        """
        with self._errors("listing of the networks"):
            if self._engine == "podman":
                networks = self._libpod_networks()
                containers = self._list()
                return libpod_network_records(networks, containers, _domain_of)
            networks = list(self._api.networks())
        return docker_network_records(networks, self._list(), _domain_of)

    def _libpod_networks(self) -> list[dict[str, Any]]:
        """libpod's network list (Podman 4 and later), one call."""
        response = self._api._get(f"{self._api.base_url}/v{LIBPOD_API_VERSION}/libpod/networks/json")
        self._api._raise_for_status(response)
        return list(response.json())

    # --- storage: the named volumes -----------------------------------------------------------------

    def _volumes_directory(self) -> str:
        """Where the engine keeps its named volumes, on its host: Docker ``<DockerRootDir>/volumes``, Podman
        libpod's ``store.volumePath`` (both read once per connection)."""
        if self._volumes_dir is None:
            if self._engine == "podman":
                with self._errors("podman info (libpod)"):
                    response = self._api._get(f"{self._api.base_url}/v{LIBPOD_API_VERSION}/libpod/info")
                    self._api._raise_for_status(response)
                    self._volumes_dir = str((response.json().get("store") or {})["volumePath"])
            else:
                root = str(self._host_facts().get("DockerRootDir") or "/var/lib/docker")
                self._volumes_dir = f"{root.rstrip('/')}/volumes"
        return self._volumes_dir

    def _check_pool(self, pool: str) -> None:
        if pool != POOL_NAME:
            raise NoStoragePoolError(
                f"storage pool {quote(pool)} not found ({self._engine}'s named volumes are the pool {POOL_NAME!r})"
            )

    def list_storage_pools(self) -> list[PoolInfo]:
        """The one pool ``volumes``: the engine's named volumes (no engine call once the volume directory is read)."""
        return [pool_info(self._engine, self._volumes_directory())]

    def lookup_storage_pool(self, name: str) -> PoolInfo:
        """``volumes``; NoStoragePoolError for any other name."""
        self._check_pool(name)
        return pool_info(self._engine, self._volumes_directory())

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """Every named volume: one ``GET /volumes`` whatever their number (Docker answers ``null`` for none)."""
        self._check_pool(pool)
        with self._errors("listing of the named volumes"):
            answer = self._api.volumes()
        return [volume_info(raw) for raw in (answer or {}).get("Volumes") or []]

    def lookup_volume(self, pool: str, name: str) -> VolumeInfo:
        """One inspect (``GET /volumes/{name}``); NoStorageVolumeError when the engine has no such volume."""
        self._check_pool(pool)
        if "/" in name:  # a volume name is one word: no engine has such a volume, and the URL would change
            raise NoStorageVolumeError(f"storage volume {quote(name)} not found")
        with self._errors(f"lookup of volume {quote(name)}", name, NoStorageVolumeError):
            return volume_info(self._api.inspect_volume(name))

    def create_volume(
        self, pool: str, name: str, capacity_bytes: int | None, format: str, backing: str | None
    ) -> VolumeInfo:
        """``docker volume create --driver local --label virtabs.create-token=TOKEN NAME``: a directory volume
        (format ``dir``, no size). An existing name is refused: the engine answers a create of one with the
        existing volume, which lacks this create's token."""
        self._check_pool(pool)
        if format != DIRECTORY_FORMAT or capacity_bytes is not None or backing is not None:
            raise InvalidArgumentError(
                f"volume {quote(name)}: {self._engine}'s pool {POOL_NAME!r} holds named volumes, which are "
                f"directories: create one with format {DIRECTORY_FORMAT!r}, no capacity and no backing image "
                f"(not {quote(format)})"
            )
        problem = volume_name_problem(self._engine, name)
        if problem is not None:
            raise InvalidArgumentError(f"invalid volume name {quote(name)}: {problem}")
        token = _uuid.uuid4().hex
        with self._errors(f"create of volume {quote(name)} in pool {POOL_NAME!r}"):
            created = self._api.create_volume(name, driver="local", labels={CREATE_TOKEN_LABEL: token})
        if (created.get("Labels") or {}).get(CREATE_TOKEN_LABEL) != token:
            raise OperationInvalidError(f"storage volume {quote(name)} already exists in pool {POOL_NAME!r}")
        return volume_info(created)

    def delete_volume(self, pool: str, name: str) -> None:
        """``docker volume rm``: NoStorageVolumeError when missing, OperationInvalidError while a container uses it."""
        self._check_pool(pool)
        if "/" in name:
            raise NoStorageVolumeError(f"storage volume {quote(name)} not found")
        with self._errors(f"delete of volume {quote(name)}", name, NoStorageVolumeError):
            self._api.remove_volume(name)

    # --- lifecycle ----------------------------------------------------------------------------------

    def define_domain(self, spec: DomainSpec) -> DomainRef:
        """Create the container (not started) from the spec's image and command."""
        try:
            args = create_arguments(spec)
        except SpecError as exc:
            raise InvalidArgumentError(str(exc)) from None
        if spec.uuid is not None and any(ref.uuid == spec.uuid for ref in self.list_domains()):
            raise OperationFailedError(f"domain {quote(spec.name)}: UUID {spec.uuid} is already used")
        host_config = self._api.create_host_config(**args.pop("host_config"))
        try:
            with self._errors(f"definition of domain {quote(spec.name)}"):
                created = self._api.create_container(host_config=host_config, **args)
        except OperationInvalidError as exc:  # 409: the name is taken
            raise OperationFailedError(f"domain {quote(spec.name)} already exists: {exc.message}") from None
        except OperationFailedError as exc:
            if "No such image" in exc.message or "image not known" in exc.message:
                raise InvalidArgumentError(f"domain {quote(spec.name)}: {exc.message}") from None
            raise
        return DomainRef(spec.name, container_uuid(created["Id"], args.get("labels")))

    def undefine(self, dom: DomainRef) -> None:
        """Remove the container; its volumes are kept."""
        data = self._inspect(dom)
        with self._errors(f"removal of domain {quote(dom.name)}", dom.name):
            self._api.remove_container(data["Id"], v=False)

    def start(self, dom: DomainRef, paused: bool) -> None:
        """Start it; pause it right away when ``paused``."""
        data = self._inspect(dom)
        with self._errors(f"start of domain {quote(dom.name)}", dom.name):
            self._api.start(data["Id"])
            if paused:
                self._api.pause(data["Id"])

    def shutdown(self, dom: DomainRef) -> None:
        """Send the container's stop signal (``StopSignal``, default SIGTERM) and return; unpause it first."""
        data = self._inspect(dom)
        signal = (data.get("Config") or {}).get("StopSignal") or "SIGTERM"
        with self._errors(f"shutdown of domain {quote(dom.name)}", dom.name):
            if (data.get("State") or {}).get("Paused"):  # a frozen process cannot act on the signal
                self._api.unpause(data["Id"])
            self._api.kill(data["Id"], signal=signal)

    def destroy(self, dom: DomainRef) -> None:
        """SIGKILL (also a paused container: the engines thaw it after the signal)."""
        data = self._inspect(dom)
        with self._errors(f"destroy of domain {quote(dom.name)}", dom.name):
            self._api.kill(data["Id"])

    def reboot(self, dom: DomainRef) -> None:
        """``docker restart`` with a 10 s grace period (a paused container is unpaused first: Podman refuses it)."""
        data = self._inspect(dom)
        with self._errors(f"reboot of domain {quote(dom.name)}", dom.name):
            if (data.get("State") or {}).get("Paused"):
                self._api.unpause(data["Id"])
            self._api.restart(data["Id"], timeout=10)

    def suspend(self, dom: DomainRef) -> None:
        """``docker pause``."""
        data = self._inspect(dom)
        with self._errors(f"suspend of domain {quote(dom.name)}", dom.name):
            self._api.pause(data["Id"])

    def resume(self, dom: DomainRef) -> None:
        """``docker unpause``."""
        data = self._inspect(dom)
        with self._errors(f"resume of domain {quote(dom.name)}", dom.name):
            self._api.unpause(data["Id"])

    # --- events -------------------------------------------------------------------------------------

    def start_events(self) -> None:
        """Open the engine's event stream (container events) on a client of its own, read on a thread."""
        with self._events_lock:
            if self._event_thread is not None:
                return
            with self._errors("subscription to the engine's events"):
                self._event_client = self._client()
                self._event_stream = self._event_client.events(decode=True, filters={"type": "container"})
            self._event_thread = threading.Thread(
                target=self._read_events, args=(self._event_stream,), name="virtabs-docker-events", daemon=True
            )
            self._event_thread.start()

    def _read_events(self, stream: Any) -> None:
        try:
            for raw in stream:
                event = lifecycle_event(raw)
                if event is not None:
                    self.emit(event)
        except Exception:  # the stream was closed (stop_events) or the engine went away
            return

    def stop_events(self) -> None:
        """Close the event stream and wait for its reader."""
        with self._events_lock:
            stream, thread, client = self._event_stream, self._event_thread, self._event_client
            self._event_stream = self._event_thread = self._event_client = None
        if stream is not None:
            with suppress(Exception):  # closing a dead stream
                stream.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        if client is not None:
            client.close()

    def close(self) -> None:
        """Stop events and close the HTTP session."""
        self.stop_events()
        self._api.close()


def lifecycle_event(raw: Mapping[str, Any]) -> LifecycleEvent | None:
    """A virtabs lifecycle event from one engine event (Docker's or Podman's), or None for other actions."""
    action = str(raw.get("Action") or raw.get("status") or "")
    kind = _EVENTS.get(action)
    if kind is None or raw.get("Type", "container") != "container":
        return None
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    container_id = str(actor.get("ID") or raw.get("id") or "")
    if len(container_id) < 32:
        return None
    return LifecycleEvent(
        domain=str(attributes.get("name", "")),
        uuid=container_uuid(container_id, attributes),
        type=kind,
        detail=action,
    )


def _major(version: str) -> int:
    """The major number of a version string (``4.3.1`` -> 4; 0 when there is none)."""
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def _domain_of(entry: Mapping[str, Any]) -> tuple[str, str]:
    """The domain name and UUID of one entry of the container listing."""
    return _name(entry), container_uuid(entry["Id"], entry.get("Labels"))


def _nics(networks: Mapping[str, Any] | None) -> list[NicInfo]:
    """A container's NICs: one per network it is on (not ``none``), named as the network list names it."""
    out = []
    for network, settings in container_networks({"NetworkSettings": {"Networks": networks}}).items():
        ips = tuple(ip for ip in (settings.get("IPAddress"), settings.get("GlobalIPv6Address")) if ip)
        out.append(NicInfo(mac=settings.get("MacAddress") or None, network=network, model="veth", ips=ips))
    return out
