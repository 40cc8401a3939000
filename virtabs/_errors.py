"""The virtabs error tree.

Every error virtabs raises is a :class:`VirtabsError`. Each one carries a
``code`` (libvirt's ``virErrorNumber`` where libvirt has one, so a log line
reads the same in both worlds) and a ``message`` that names the object it is
about. Most also inherit the builtin exception a Python caller would expect,
so ``except LookupError`` or ``except TimeoutError`` keep working::

    VirtabsError (Exception)                              code
    ├── InternalError                                        1
    ├── NotSupportedError (NotImplementedError)              3
    ├── ConnectError (ConnectionError)                       5
    ├── InvalidArgumentError (ValueError)                    8
    ├── OperationFailedError                                 9
    ├── OperationDeniedError (PermissionError)              29
    ├── NoDomainError (LookupError)                         42
    ├── NoNetworkError (LookupError)                        43
    ├── NoStoragePoolError (LookupError)                    49
    ├── NoStorageVolumeError (LookupError)                  50
    ├── AuthError (PermissionError)                         45
    ├── OperationInvalidError                               55
    ├── OperationTimeoutError (TimeoutError)                68
    ├── NoSnapshotError (LookupError)                       72
    ├── BlockCopyActiveError                                83
    ├── DriverNotFoundError (LookupError)                 1001
    └── DriverUnavailableError (ImportError)              1002

Codes of 1000 and above are virtabs' own (libvirt has no equivalent: it
compiles its drivers in).

Rules every raiser follows:

* A driver never lets a raw backend exception escape; the public API layer
  wraps anything that is not a ``VirtabsError`` into
  :class:`OperationFailedError` (keeping the original as ``__cause__``).
* Credentials never appear in a message: the public layer redacts the
  connection's secrets from every message before it reaches the caller.
* A message quotes a caller's value through :func:`quote` (a bounded prefix
  and the value's length), and a message is never longer than
  :data:`MAX_MESSAGE` characters: a 10 MB name gives a one-line error.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AuthError",
    "BlockCopyActiveError",
    "ConnectError",
    "DriverNotFoundError",
    "DriverUnavailableError",
    "ErrorCode",
    "InternalError",
    "InvalidArgumentError",
    "NoDomainError",
    "NoNetworkError",
    "NoSnapshotError",
    "NoStoragePoolError",
    "NoStorageVolumeError",
    "NotSupportedError",
    "OperationDeniedError",
    "OperationFailedError",
    "OperationInvalidError",
    "OperationTimeoutError",
    "VirtabsError",
    "MAX_MESSAGE",
    "error_class_for_code",
    "quote",
]

import enum

MAX_MESSAGE = 2048
"""The longest message an error carries; the rest is cut and the cut is said."""
QUOTE_PREFIX = 80
"""How many characters of a value :func:`quote` shows."""


def quote(value: object, limit: int = QUOTE_PREFIX) -> str:
    """``repr(value)`` for a message, bounded: a long value shows its first ``limit`` characters and its length.

    ``quote("web")`` is ``'web'``; ``quote("x" * 10**7)`` is ``'xxxx…' (10000000 characters)``.
    """
    if isinstance(value, str | bytes) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} {'characters' if isinstance(value, str) else 'bytes'})"
    text = repr(value)
    if len(text) > limit + 2:
        return f"{text[:limit]}… ({len(text)} characters as text)"
    return text


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:MAX_MESSAGE]}… (message cut: {len(message)} characters)"


class ErrorCode(enum.IntEnum):
    """Error codes; values are libvirt's ``virErrorNumber`` where one exists."""

    INTERNAL_ERROR = 1
    NO_SUPPORT = 3
    NO_CONNECT = 5
    INVALID_ARG = 8
    OPERATION_FAILED = 9
    OPERATION_DENIED = 29
    NO_DOMAIN = 42
    NO_NETWORK = 43
    AUTH_FAILED = 45
    NO_STORAGE_POOL = 49
    NO_STORAGE_VOL = 50
    OPERATION_INVALID = 55
    OPERATION_TIMEOUT = 68
    NO_DOMAIN_SNAPSHOT = 72
    BLOCK_COPY_ACTIVE = 83
    DRIVER_NOT_FOUND = 1001
    DRIVER_UNAVAILABLE = 1002


class VirtabsError(Exception):
    """Base of every virtabs error: a numeric ``code`` and a ``message``."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        message = _bounded(str(message))
        super().__init__(message)
        self.message = message

    @property
    def code_name(self) -> str:
        """The symbolic name of :attr:`code`, e.g. ``"NO_DOMAIN"``."""
        return self.code.name

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={int(self.code)}, message={self.message!r})"


class InternalError(VirtabsError):
    """A bug or an unexpected state inside virtabs or a driver."""

    code = ErrorCode.INTERNAL_ERROR


class NotSupportedError(VirtabsError, NotImplementedError):
    """The driver cannot do this operation; raised before the host is touched."""

    code = ErrorCode.NO_SUPPORT


class ConnectError(VirtabsError, ConnectionError):
    """The hypervisor (or its management endpoint) could not be reached."""

    code = ErrorCode.NO_CONNECT


class InvalidArgumentError(VirtabsError, ValueError):
    """An argument, or a combination of flags, is not valid."""

    code = ErrorCode.INVALID_ARG


class OperationFailedError(VirtabsError):
    """The hypervisor tried and failed; the message says what it reported."""

    code = ErrorCode.OPERATION_FAILED


class OperationDeniedError(VirtabsError, PermissionError):
    """A write operation on a read-only connection."""

    code = ErrorCode.OPERATION_DENIED


class NoDomainError(VirtabsError, LookupError):
    """No domain with that name or UUID."""

    code = ErrorCode.NO_DOMAIN


class AuthError(VirtabsError, PermissionError):
    """Authentication failed or no credentials were available."""

    code = ErrorCode.AUTH_FAILED


class NoNetworkError(VirtabsError, LookupError):
    """No network with that name or id on the host."""

    code = ErrorCode.NO_NETWORK


class NoStoragePoolError(VirtabsError, LookupError):
    """No storage pool with that name."""

    code = ErrorCode.NO_STORAGE_POOL


class NoStorageVolumeError(VirtabsError, LookupError):
    """No storage volume with that name in the pool."""

    code = ErrorCode.NO_STORAGE_VOL


class OperationInvalidError(VirtabsError):
    """The operation is valid in general but not in the object's current state."""

    code = ErrorCode.OPERATION_INVALID


class OperationTimeoutError(VirtabsError, TimeoutError):
    """The operation did not finish within its timeout."""

    code = ErrorCode.OPERATION_TIMEOUT


class NoSnapshotError(VirtabsError, LookupError):
    """No snapshot with that name on the domain."""

    code = ErrorCode.NO_DOMAIN_SNAPSHOT


class BlockCopyActiveError(VirtabsError):
    """An action prevented by a block copy (or other block) job on the disk."""

    code = ErrorCode.BLOCK_COPY_ACTIVE


class DriverNotFoundError(VirtabsError, LookupError):
    """No installed driver serves the URI's scheme."""

    code = ErrorCode.DRIVER_NOT_FOUND


class DriverUnavailableError(VirtabsError, ImportError):
    """The driver is installed but cannot load (a dependency is missing)."""

    code = ErrorCode.DRIVER_UNAVAILABLE


_BY_CODE: dict[int, type[VirtabsError]] = {
    cls.code: cls
    for cls in (
        InternalError,
        NotSupportedError,
        ConnectError,
        InvalidArgumentError,
        OperationFailedError,
        OperationDeniedError,
        NoDomainError,
        NoNetworkError,
        AuthError,
        NoStoragePoolError,
        NoStorageVolumeError,
        OperationInvalidError,
        OperationTimeoutError,
        NoSnapshotError,
        BlockCopyActiveError,
        DriverNotFoundError,
        DriverUnavailableError,
    )
}


def error_class_for_code(code: int) -> type[VirtabsError]:
    """The virtabs error class for a libvirt/virtabs error code.

    Codes without a dedicated class map to :class:`OperationFailedError`;
    drivers that bridge another library (``contrib/virtabs-libvirt``) use this
    to turn a foreign error number into the matching virtabs error.
    """
    return _BY_CODE.get(code, OperationFailedError)
