"""The vSphere session: connect, bulk property reads with paging, tasks, fault translation.

Imported by the driver's ``__init__`` only (it imports pyVmomi). Every read goes through
:meth:`Session.retrieve`: one ``RetrievePropertiesEx`` for exactly the properties asked, then
``ContinueRetrievePropertiesEx`` while the server hands back a token. Nothing here touches a managed
object attribute (which would cost pyVmomi one ``Fetch`` round trip each).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from collections.abc import Iterable, Sequence
from typing import Any
from xml.etree import ElementTree

import pyVim.connect
import pyVmomi
from virtabs.spi import (
    AuthError,
    ConnectError,
    Deadline,
    ErrorMap,
    InvalidArgumentError,
    NoDomainError,
    NotSupportedError,
    OperationFailedError,
    OperationInvalidError,
    OperationTimeoutError,
    VirtabsError,
    describe_tls_failure,
)

__all__ = ["PAGE_SIZE", "Session", "describe_fault", "errors"]

# pyVmomi's stubs are partial (its factories are untyped): the driver treats its objects as Any.
vim: Any = pyVmomi.vim
vmodl: Any = pyVmomi.vmodl
Connect: Any = pyVim.connect.Connect
GetServiceVersions: Any = pyVmomi.VmomiSupport.GetServiceVersions
# pyVim's own test of vimServiceVersions.xml (a module-level name, so not mangled: reachable by getattr)
_version_is_supported: Any = getattr(pyVim.connect, "__VersionIsSupported")
Disconnect: Any = pyVim.connect.Disconnect
PC: Any = vmodl.query.PropertyCollector
_NETWORK_ERRORS = (ssl.SSLError, ConnectionError, socket.timeout, http.client.HTTPException)

#: seconds opening a session may take when the connection has no ``timeout=``
CONNECT_TIMEOUT = 60.0


def _probe_version(
    protocol: str, host: str, port: int, context: ssl.SSLContext | None, timeout: float, what: str
) -> str:
    """The newest API version both pyVmomi and the server speak, from ``/sdk/vimServiceVersions.xml``.

    What pyVim's ``SmartConnect`` asks first, but on a connection with a timeout. A socket timeout
    propagates (``TimeoutError``); TLS and network failures propagate for the caller to describe.
    """
    conn: http.client.HTTPConnection
    if protocol == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/sdk/vimServiceVersions.xml")
        response = conn.getresponse()
        body = response.read(1 << 20)
    finally:
        conn.close()
    document = None
    if response.status == 200:
        with contextlib.suppress(ElementTree.ParseError):
            document = ElementTree.ElementTree(ElementTree.fromstring(body))
    if document is None:
        raise ConnectError(
            f"{what}: {host}:{port} is not a vSphere endpoint "
            f"(GET /sdk/vimServiceVersions.xml answered HTTP {response.status})"
        )
    for version in GetServiceVersions("vim25"):
        with contextlib.suppress(Exception):  # an unknown version id in pyVmomi's table: try the next
            if _version_is_supported(version, document):
                return str(version)
    raise ConnectError(f"{what}: {host}:{port} speaks no vSphere API version this pyVmomi knows")


#: objects per RetrievePropertiesEx page (vCenter's own default is 100; bigger pages, fewer round trips)
PAGE_SIZE = 1000


def describe_fault(exc: BaseException) -> str:
    """One line: the fault's message and its short type name (never the fault's full dump)."""
    name = type(exc).__name__.rsplit(".", 1)[-1]
    msg = getattr(exc, "msg", None)
    if not isinstance(msg, str) or not msg.strip():
        msg = str(exc) if not isinstance(exc, vmodl.MethodFault) else ""
    first = msg.strip().splitlines()[0] if msg.strip() else ""
    return f"{first} ({name})" if first and name not in first else (first or name)


def _fault(*names: str) -> Any:
    """A matcher for vSphere faults by short type name (InvalidPowerState, ...)."""
    wanted = frozenset(names)

    def match(exc: BaseException) -> bool:
        return any(cls.__name__.rsplit(".", 1)[-1] in wanted for cls in type(exc).__mro__)

    return match


errors = ErrorMap(
    [
        (_fault("InvalidLogin", "NotAuthenticated", "NoPermission"), AuthError),
        (_fault("InvalidPowerState", "InvalidState", "TaskInProgress", "ToolsUnavailable"), OperationInvalidError),
        (_fault("ManagedObjectNotFound"), NoDomainError),
        (
            _fault("FileAlreadyExists", "DuplicateName", "AlreadyExists", "FileNotFound", "NotFound"),
            OperationFailedError,
        ),
        (_fault("MethodNotFound"), OperationFailedError),  # a subclass of InvalidRequest: before it
        (_fault("InvalidArgument", "InvalidRequest", "InvalidName", "InvalidDatastorePath"), InvalidArgumentError),
        (_fault("NotSupported", "NotImplemented"), NotSupportedError),
        (TimeoutError, OperationTimeoutError),  # the connection's timeout= passed: socket.timeout is one
        (lambda exc: isinstance(exc, _NETWORK_ERRORS), ConnectError),
    ],
    default=OperationFailedError,
    describe=describe_fault,
)
"""Native exception -> virtabs error, for every call the driver makes."""


class Session:
    """One logged-in pyVmomi service instance plus the container views the driver reuses."""

    def __init__(
        self,
        *,
        protocol: str,
        host: str,
        port: int,
        username: str,
        password: str,
        context: ssl.SSLContext | None,
        timeout: float | None,
        what: str,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.what = what
        self.timeout = timeout
        self.page_size = page_size
        # pyVmomi's SmartConnect probes /sdk/vimServiceVersions.xml on a connection without a timeout (a
        # host that accepts TCP and never answers blocks it for ever): the driver probes itself, bounded,
        # then logs in with pyVim's Connect at the version found, the stub carrying the connection's timeout.
        limit = timeout or CONNECT_TIMEOUT
        kwargs: dict[str, Any] = {
            "host": host,
            "port": port if protocol == "https" else -port,  # pyVim: a negative port means plain HTTP
            "user": username,
            "pwd": password,
        }
        if timeout:
            kwargs["httpConnectionTimeout"] = timeout  # every later call of the stub too
        if context is not None:
            kwargs["sslContext"] = context
        try:
            kwargs["version"] = _probe_version(protocol, host, port, context, limit, what)
            self.si = Connect(**kwargs)
        except vim.fault.InvalidLogin:
            raise AuthError(f"{what}: login as {username!r} refused (wrong user name or password)") from None
        except VirtabsError:
            raise
        except TimeoutError:
            raise OperationTimeoutError(
                f"{what}: {host}:{port} accepted the connection but did not answer within {limit:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            tls = describe_tls_failure(exc, f"{host}:{port}")
            if tls is not None:
                raise ConnectError(f"{what}: {tls}") from None
            raise ConnectError(f"{what}: cannot reach {host}:{port}: {describe_fault(exc)}") from None
        except vmodl.MethodFault as exc:
            raise ConnectError(f"{what}: {describe_fault(exc)}") from None
        self.content = self.si.RetrieveContent()
        self.pc = self.content.propertyCollector
        self._views: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Log out (best effort)."""
        with contextlib.suppress(Exception):  # the server may be gone already
            Disconnect(self.si)

    # --- reads ------------------------------------------------------------------

    def view(self, root: Any, kind: Any) -> Any:
        """A ContainerView of every ``kind`` below ``root``, created once per session."""
        key = (root._moId, kind.__name__)
        with self._lock:
            view = self._views.get(key)
            if view is None:
                view = self.content.viewManager.CreateContainerView(root, [kind], True)
                self._views[key] = view
        return view

    def retrieve(
        self,
        specs: Sequence[Any],
        *,
        collector: Any = None,
        page_size: int | None = -1,
    ) -> list[Any]:
        """Every ObjectContent the filter specs select: RetrievePropertiesEx, then the Continue paging loop.

        ``page_size`` -1 means the session's (``?page_size=``), None lets the server choose.
        """
        pc = collector if collector is not None else self.pc
        if page_size == -1:
            page_size = self.page_size
        result = pc.RetrievePropertiesEx(specSet=list(specs), options=PC.RetrieveOptions(maxObjects=page_size))
        objects: list[Any] = []
        while result is not None:
            objects.extend(result.objects)
            if not result.token:
                break
            result = pc.ContinueRetrievePropertiesEx(token=result.token)
        return objects

    def view_spec(self, view: Any, kind: Any, paths: Iterable[str]) -> Any:
        """A filter spec selecting ``paths`` of every object in ``view``."""
        traverse = PC.TraversalSpec(name="view", type=vim.view.ContainerView, path="view", skip=False)
        return PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            propSet=[PC.PropertySpec(type=kind, pathSet=list(paths))],
        )

    def objects(self, root: Any, kind: Any, paths: Iterable[str]) -> list[tuple[Any, dict[str, Any]]]:
        """``(moref, {path: value})`` for every ``kind`` below ``root``: one round trip (per page)."""
        spec = self.view_spec(self.view(root, kind), kind, paths)
        return [(oc.obj, {p.name: p.val for p in oc.propSet}) for oc in self.retrieve([spec])]

    def objects_of_kinds(
        self, root: Any, wanted: Sequence[tuple[Any, Any, Iterable[str]]]
    ) -> list[tuple[Any, dict[str, Any]]]:
        """``(moref, {path: value})`` of several kinds below ``root`` in ONE round trip (per page).

        ``wanted`` holds ``(view kind, property type, paths)``: one filter spec per entry, over the session's
        container view of ``view kind``; an object matching several entries of one view (a distributed port
        group is a Network) comes once with the paths of each.
        """
        specs = [self.view_spec(self.view(root, view_kind), kind, paths) for view_kind, kind, paths in wanted]
        merged: dict[str, tuple[Any, dict[str, Any]]] = {}
        for oc in self.retrieve(specs):
            _, props = merged.setdefault(f"{type(oc.obj).__name__}:{oc.obj._moId}", (oc.obj, {}))
            props.update({p.name: p.val for p in oc.propSet})
        return list(merged.values())

    def vms_with_port_groups(self, root: Any, paths: Iterable[str]) -> list[tuple[Any, dict[str, Any]]]:
        """:meth:`objects` of every VirtualMachine below ``root``, and ``key`` and ``name`` of every distributed
        port group one of them is on (through ``VirtualMachine.network``): one round trip (per page), over the
        session's VirtualMachine view only."""
        to_networks = PC.TraversalSpec(name="net", type=vim.VirtualMachine, path="network", skip=False)
        traverse = PC.TraversalSpec(
            name="view", type=vim.view.ContainerView, path="view", skip=False, selectSet=[to_networks]
        )
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=self.view(root, vim.VirtualMachine), skip=True, selectSet=[traverse])],
            propSet=[
                PC.PropertySpec(type=vim.VirtualMachine, pathSet=list(paths)),
                PC.PropertySpec(type=vim.dvs.DistributedVirtualPortgroup, pathSet=["key", "name"]),
            ],
        )
        return [(oc.obj, {p.name: p.val for p in oc.propSet}) for oc in self.retrieve([spec])]

    def with_port_groups(self, obj: Any, paths: Iterable[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Properties of a VirtualMachine, and ``key`` and ``name`` of the distributed port groups it is on
        (through ``obj.network``): one round trip."""
        traverse = PC.TraversalSpec(name="net", type=vim.VirtualMachine, path="network", skip=False)
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=obj, skip=False, selectSet=[traverse])],
            propSet=[
                PC.PropertySpec(type=vim.VirtualMachine, pathSet=list(paths)),
                PC.PropertySpec(type=vim.dvs.DistributedVirtualPortgroup, pathSet=["key", "name"]),
            ],
        )
        own: dict[str, Any] = {}
        networks = []
        for oc in self.retrieve([spec], page_size=None):
            props = {p.name: p.val for p in oc.propSet}
            if oc.obj._moId == obj._moId and isinstance(oc.obj, vim.VirtualMachine):
                own = props
            else:
                networks.append(props)
        return own, networks

    def related(self, obj: Any, path: str, kind: Any, paths: Iterable[str]) -> list[tuple[Any, dict[str, Any]]]:
        """``(moref, {path: value})`` of the objects ``obj.<path>`` refers to (e.g. a host's datastores): one call."""
        traverse = PC.TraversalSpec(name="rel", type=type(obj), path=path, skip=False)
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=obj, skip=True, selectSet=[traverse])],
            propSet=[PC.PropertySpec(type=kind, pathSet=list(paths))],
        )
        return [(oc.obj, {p.name: p.val for p in oc.propSet}) for oc in self.retrieve([spec])]

    def properties(self, obj: Any, paths: Iterable[str]) -> dict[str, Any]:
        """Properties of one object (unset ones are absent). ManagedObjectNotFound propagates."""
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=obj, skip=False)],
            propSet=[PC.PropertySpec(type=type(obj), pathSet=list(paths))],
        )
        found = self.retrieve([spec], page_size=None)
        return {p.name: p.val for p in found[0].propSet} if found else {}

    # --- tasks ------------------------------------------------------------------

    def task_info(self, task: Any) -> dict[str, Any]:
        """A task's state, progress, error and result, read in one call (never ``info.entity``).

        vcsim 0.24.2 puts a Snapshot into ``info.entity`` where pyVmomi expects a ManagedEntity, which
        makes pyVmomi's own WaitForTask fail; reading only these four fields avoids that and is cheaper.
        """
        return self.properties(task, ["info.state", "info.progress", "info.error", "info.result"])

    def wait(self, task: Any, what: str, timeout: float | None = None) -> Any:
        """Wait for ``task`` within the connection's timeout; its result, or its fault raised (translated)."""
        limit = timeout if timeout is not None else self.timeout
        deadline = Deadline(limit)
        delay = 0.005
        while True:
            info = self.task_info(task)
            state = info.get("info.state")
            if state == "success":
                return info.get("info.result")
            if state == "error":
                fault = info.get("info.error")
                raise errors.translate(fault if isinstance(fault, BaseException) else RuntimeError(state), what)
            if deadline.expired:
                with contextlib.suppress(Exception):  # not cancellable, or already over
                    task.CancelTask()
                raise OperationTimeoutError(f"{what} did not finish within {limit}s (task cancelled)")
            deadline.sleep(delay)
            delay = min(delay * 2, 0.25)

    def run(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        """Start a ``*_Task`` method and wait for it; faults become virtabs errors naming ``what``."""
        with errors(what):
            task = call(*args, **kwargs)
        try:
            return self.wait(task, what)
        except VirtabsError:
            raise
        except Exception as exc:
            raise errors.translate(exc, what) from exc
