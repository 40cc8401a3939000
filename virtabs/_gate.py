"""The gate: steps 1-5 of every public call, driven by the operation table.

Every public method has one shape::

    with self._conn._gate(OPERATIONS["start"], what, dom=self._ref) as call:
        call.driver.start(self._ref, paused)

Entering the gate checks, in libvirt's order and before any driver code runs:

1. the connection is open, and writable if the row says ``writes``;
2. (the public method has already checked its arguments and flags;)
3. the driver declares the row's capability (plus ``extra`` ones);
4. if the row has a state or job rule: one :meth:`Driver.domain_status` call,
   then :func:`~virtabs._rules.check_state` and :func:`~virtabs._rules.check_jobs`.

Inside the block, (5) anything the driver raises that is not a
:class:`VirtabsError` becomes ``OperationFailedError``, and every message has
the connection's secrets redacted.

Reads that inventory and monitoring tools make in tight loops (``state()``,
``info()``, ``block_job_info()``) take :meth:`Gate.read` instead: the same steps,
without a generator-based context manager, and with steps 1 and 3 remembered
per operation once they have passed (the capabilities and read-only mode of a
connection never change; whether it is closed is checked on every call).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import attrs

from . import _rules
from ._capabilities import Capabilities, Capability
from ._errors import (
    NotSupportedError,
    OperationDeniedError,
    OperationFailedError,
    OperationInvalidError,
    VirtabsError,
)
from ._models import BlockJobInfo, DomainRef
from .spi import Driver, Operation

if TYPE_CHECKING:
    from ._uri import URI

__all__ = ["Gate", "GateCall", "Redactor", "translating"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

log = logging.getLogger("virtabs")


class Redactor:
    """Replaces every secret of a connection in a text with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


@attrs.frozen
class GateCall:
    """What a public method gets inside the gate: the driver, and what the gate read on the way."""

    driver: Driver
    job: BlockJobInfo | None = None
    """The disk's job, for rules that look at one (JOB_ON_DISK), progress capped as libvirt does."""


class Gate:
    """One connection's gate. Holds no state of its own beyond the connection's."""

    def __init__(
        self,
        driver: Driver,
        uri: URI,
        capabilities: Capabilities,
        readonly: bool,
        redact: Redactor,
    ) -> None:
        self.driver = driver
        self.uri = uri
        self.capabilities = capabilities
        self.readonly = readonly
        self.redact = redact
        self.closed = False
        self._passed: set[str] = set()
        """Rows whose steps 1 and 3 passed on this connection and that need no state read."""

    @property
    def driver_name(self) -> str:
        """The driver's name (the URI scheme)."""
        return type(self.driver).name or self.uri.driver

    def check_open(self) -> None:
        """OperationInvalidError once the connection is closed."""
        if self.closed:
            raise OperationInvalidError(f"connection {self.uri} is closed")

    def require(self, caps: Iterable[Capability] | Capability, what: str) -> None:
        """NotSupportedError unless the driver declares (one of) ``caps``."""
        wanted = frozenset({caps}) if isinstance(caps, Capability) else frozenset(caps)
        if wanted and not wanted & self.capabilities.supported:
            names = " or ".join(sorted(c.value for c in wanted))
            # a capability the driver declares but this connection dropped says why (e.g. a tool the host lacks)
            reasons = sorted({why for cap, why in self.capabilities.dropped.items() if cap in wanted})
            why = f" on this connection: {'; '.join(reasons)}" if reasons else ""
            raise NotSupportedError(f"{what}: the {self.driver_name} driver does not support {names}{why}")

    def check(
        self,
        op: Operation,
        what: str,
        *,
        dom: DomainRef | None = None,
        domain_name: str = "",
        disk: str | None = None,
        extra: Iterable[Capability] = (),
    ) -> GateCall:
        """Steps 1, 3 and 4 for ``op``; raises before any driver code when one fails."""
        self.check_open()
        if op.writes and self.readonly:
            raise OperationDeniedError(f"{what}: connection {self.uri} is read-only")
        self.require(op.required_capabilities(), what)
        for cap in extra:
            self.require(cap, what)
        if dom is None or not op.needs_status:
            if not extra and not op.needs_status:
                self._passed.add(op.method)
            return GateCall(self.driver)
        with self.translate(what):
            status = self.driver.domain_status(dom)
        _rules.check_state(op, status.state, what, domain_name or dom.name)
        _rules.check_persistent(op, status, what, domain_name or dom.name)
        job = _rules.check_jobs(op, status, disk, what)
        return GateCall(self.driver, _rules.never_done_before_ready(job))

    @contextlib.contextmanager
    def __call__(
        self,
        op: Operation,
        what: str,
        *,
        dom: DomainRef | None = None,
        disk: str | None = None,
        extra: Iterable[Capability] = (),
    ) -> Iterator[GateCall]:
        """Check ``op`` (steps 1-4), then run the block with foreign errors wrapped (step 5)."""
        call = self.check(op, what, dom=dom, disk=disk, extra=extra)
        log.debug("%s: %s.%s", what, self.driver_name, op.method)
        with self.translate(what):
            yield call

    def read(
        self,
        op: Operation,
        what: Callable[[], str],
        fn: Callable[_P, _R],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _R:
        """``fn(*args)`` behind the gate: :meth:`__call__`'s steps for a row with no state rule.

        ``what`` builds the call's description (only needed for an error or a debug log).
        """
        if op.method not in self._passed or self.closed:
            if op.needs_status:
                raise TypeError(f"Gate.read cannot serve {op.method}: it has a state rule")
            self.check(op, what())
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s.%s", what(), self.driver_name, op.method)
        try:
            return fn(*args, **kwargs)
        except VirtabsError as exc:
            _redact_error(self.redact, exc)
            raise
        except Exception as exc:
            text = what()
            detail = self.redact(str(exc)) or type(exc).__name__
            raise OperationFailedError(f"{text} failed: {detail}") from exc

    def translate(
        self, what: str, wrap: type[VirtabsError] = OperationFailedError
    ) -> contextlib.AbstractContextManager[None]:
        """Redact secrets from virtabs errors; wrap anything else into ``wrap`` naming ``what``."""
        return translating(self.redact, what, wrap)


@contextlib.contextmanager
def translating(redact: Redactor, what: str, wrap: type[VirtabsError] = OperationFailedError) -> Iterator[None]:
    """Step 5 of every call: virtabs errors pass with secrets redacted; anything else becomes ``wrap``."""
    try:
        yield
    except VirtabsError as exc:
        _redact_error(redact, exc)
        raise
    except Exception as exc:
        detail = redact(str(exc)) or type(exc).__name__
        raise wrap(f"{what} failed: {detail}") from exc


def _redact_error(redact: Redactor, exc: VirtabsError) -> None:
    redacted = redact(exc.message)
    if redacted != exc.message:
        exc.message = redacted
        exc.args = (redacted,)
