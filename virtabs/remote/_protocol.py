"""The virtabs remote protocol: framed JSON messages, the record schema, and errors on the wire.

One byte stream in each direction (ssh's stdin/stdout). Each message is a **frame**: a 4-byte
big-endian unsigned length (of the payload only, at most :data:`MAX_FRAME` bytes), then the payload,
one JSON object encoded as UTF-8. Every object has a ``"type"``; docs/remote.md lists them all.

Records are encoded by an explicit schema derived from the type hints of the SPI (the attrs classes of
:mod:`virtabs.spi` and the parameters of :class:`virtabs.spi.Driver`'s methods): an attrs instance is a
JSON object of its fields, an enum its member name, a set of flags (an :class:`enum.Flag`) the JSON
array of its members' names, a datetime ISO 8601 text, a tuple or list a JSON array. Decoding builds the same classes again through their constructors (their validators run); an
unknown field, a wrong JSON type or an unknown enum name is a :class:`ProtocolError`. Nothing is ever
unpickled or evaluated.
"""

from __future__ import annotations

import datetime as _dt
import enum
import functools
import inspect
import json
import operator
import os
import select
import struct
import time
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import attrs

from .. import _errors
from .._errors import ConnectError, ErrorCode, OperationFailedError, VirtabsError
from .._models import BlockJobEvent, LifecycleEvent
from ..spi import OPERATIONS, Driver

__all__ = [
    "CLIENT_CALLS",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "decode_value",
    "encode_value",
    "error_from_wire",
    "error_to_wire",
    "method_schema",
    "read_frame",
    "table_methods",
    "write_frame",
]

PROTOCOL_VERSION = 1
"""The version this side speaks; the handshake refuses any other (a mismatch names both)."""

MAX_FRAME = 16 * 1024 * 1024
"""The largest payload a frame may carry (libvirt's ``VIR_NET_MESSAGE_MAX`` is the same 16 MiB)."""

_HEADER = struct.Struct(">I")

CLIENT_CALLS = ("open", "close", "events.start", "events.stop")
"""The calls that are not rows of the operation table: open a session on the helper's host (a local
URI, read-only, timeout), close it, and start/stop the events of a session."""


class ProtocolError(ConnectError):
    """The peer broke the protocol: a malformed or oversized frame, an unknown message, field or type,
    or a version this side does not speak. Code 5 (NO_CONNECT), like every broken channel."""


def table_methods() -> tuple[str, ...]:
    """The protocol's method list: the rows of :data:`virtabs.spi.OPERATIONS`, read now (never a copy)."""
    return tuple(OPERATIONS)


# --- frames -------------------------------------------------------------------------------------


def encode_frame(message: Mapping[str, Any]) -> bytes:
    """One frame (length prefix and JSON payload) for ``message``; ProtocolError when too large."""
    payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"a {message.get('type', '?')} message of {len(payload)} bytes exceeds {MAX_FRAME} bytes")
    return _HEADER.pack(len(payload)) + payload


def write_frame(stream: BinaryIO, message: Mapping[str, Any]) -> None:
    """Write one frame and flush (the caller serialises writers)."""
    stream.write(encode_frame(message))
    stream.flush()


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    chunks = []
    left = size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class FrameTooLarge(ProtocolError):
    """A frame header announced more than :data:`MAX_FRAME` bytes (the stream cannot be trusted after it)."""


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next message, or None at a clean end of stream (EOF between frames).

    :class:`FrameTooLarge` for a length above :data:`MAX_FRAME` (nothing more is read), ProtocolError for
    a frame cut short or a payload that is not one JSON object.
    """
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise FrameTooLarge(f"a frame of {size} bytes was announced; the limit is {MAX_FRAME} bytes")
    payload = _read_exactly(stream, size)
    if payload is None:
        raise ProtocolError(f"the stream ended inside a frame of {size} bytes")
    return parse_payload(payload)


NOTHING_YET: dict[str, Any] = {"type": ""}
"""What :meth:`FrameReader.next` returns when no whole frame arrived within its timeout."""


class FrameReader:
    """Frames from a file descriptor, with a timeout (``select``), for readers that must also do other work.

    Not thread-safe: one reader at a time (the client's channel serialises readers with a lock).
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._eof = False

    def _take(self) -> dict[str, Any] | None:
        if len(self._buffer) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > MAX_FRAME:
            raise FrameTooLarge(f"a frame of {size} bytes was announced; the limit is {MAX_FRAME} bytes")
        end = _HEADER.size + size
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[_HEADER.size : end])
        del self._buffer[:end]
        return parse_payload(payload)

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next message; None at the end of the stream; :data:`NOTHING_YET` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._take()
            if message is not None:
                return message
            if self._eof:
                if self._buffer:
                    raise ProtocolError(f"the stream ended inside a frame ({len(self._buffer)} bytes of it came)")
                return None
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._fd], [], [], max(0.0, remaining))
            if not ready:
                return NOTHING_YET
            chunk = os.read(self._fd, 1 << 16)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True


def parse_payload(payload: bytes) -> dict[str, Any]:
    """A frame's payload as a JSON object; ProtocolError otherwise."""
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"a frame is not UTF-8 JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("a frame must hold a JSON object with a string 'type'")
    return message


# --- the schema: values by type hint -------------------------------------------------------------

_EVENT_KINDS: dict[str, type] = {"lifecycle": LifecycleEvent, "block_job": BlockJobEvent}
_EVENT_NAMES = {cls: name for name, cls in _EVENT_KINDS.items()}


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in attrs.fields(cls)}


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain JSON data (for fields typed ``Any``: a record's ``extra``)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ProtocolError(f"{where}: {value!r} has no JSON form")
        return value
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProtocolError(f"{where}: key {key!r} is not text")
            out[key] = _plain(item, f"{where}.{key}")
        return out
    raise ProtocolError(f"{where}: a {type(value).__name__} has no JSON form in the protocol")


_is_record: Callable[[Any], bool] = functools.cache(attrs.has)
_origin: Callable[[Any], Any] = functools.cache(typing.get_origin)
_args: Callable[[Any], tuple[Any, ...]] = functools.cache(typing.get_args)


def _exactly(kind: type) -> Callable[[Any], bool]:
    return lambda value: type(value) is kind


def _exactly_or_none(kind: type) -> Callable[[Any], bool]:
    return lambda value: value is None or type(value) is kind


_SCALAR_CHECKS: dict[Any, Callable[[Any], bool]] = {
    **{kind: _exactly(kind) for kind in (str, int, bool)},
    **{kind | None: _exactly_or_none(kind) for kind in (str, int, bool)},
}
"""The hints most fields have, with the exact check that lets a value through unchanged (the fast path
of :func:`encode_value` and :func:`decode_value`; anything else takes the general path)."""


def encode_value(value: Any, hint: Any, where: str = "value") -> Any:
    """``value`` (of the type ``hint``) as JSON data, by the schema; ProtocolError for anything else.

    The codec compiled for ``hint`` (:func:`_encoder`) does the work; when it meets anything it does not
    expect, the general walk below does it again and names the place of the error.
    """
    try:
        return _encoder(hint)(value)
    except _Mismatch:
        return _encode_walk(value, hint, where)


def _encode_walk(value: Any, hint: Any, where: str) -> Any:
    """:func:`encode_value` by walking ``hint`` for each value (every error names its place)."""
    check = _SCALAR_CHECKS.get(hint)
    if check is not None and check(value):
        return value
    if hint is Any:
        return _plain(value, where)
    origin = _origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = _args(hint)
        if value is None and type(None) in options:
            return None
        if all(_is_record(o) for o in options if o is not type(None)) and type(value) in _EVENT_NAMES:
            data = _encode_walk(value, type(value), where)
            return {"kind": _EVENT_NAMES[type(value)], **data}
        for option in options:
            if option is not type(None) and _matches(value, option):
                return _encode_walk(value, option, where)
        raise ProtocolError(f"{where}: {type(value).__name__} is none of {hint}")
    if origin in (list, tuple):
        args = _args(hint)
        if not isinstance(value, list | tuple):
            raise ProtocolError(f"{where}: expected a sequence, got {type(value).__name__}")
        return [_encode_walk(item, args[0], f"{where}[{i}]") for i, item in enumerate(value)]
    if origin in (Mapping, dict):
        key_hint, item_hint = _args(hint)
        if not isinstance(value, Mapping):
            raise ProtocolError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {_encode_walk(k, key_hint, where): _encode_walk(v, item_hint, f"{where}.{k}") for k, v in value.items()}
    if hint is type(None) or hint is None:
        if value is not None:
            raise ProtocolError(f"{where}: expected nothing, got {type(value).__name__}")
        return None
    if isinstance(hint, type):
        if _is_record(hint):
            if not isinstance(value, hint):
                raise ProtocolError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
            return {
                name: _encode_walk(getattr(value, name), field_hint, f"{where}.{name}")
                for name, field_hint in _field_types(hint).items()
            }
        if issubclass(hint, enum.Flag):
            if not isinstance(value, hint):
                raise ProtocolError(f"{where}: expected a {hint.__name__}, got {value!r}")
            members = list(value)  # the named single flags (a combination has no name of its own)
            if functools.reduce(operator.or_, members, hint(0)) != value:
                raise ProtocolError(f"{where}: {hint.__name__} {value.value!r} holds bits that have no name")
            return [m.name for m in members]
        if issubclass(hint, enum.Enum):
            if not isinstance(value, hint):
                raise ProtocolError(f"{where}: expected a {hint.__name__}, got {value!r}")
            return value.name
        if hint is _dt.datetime:
            if not isinstance(value, _dt.datetime):
                raise ProtocolError(f"{where}: expected a datetime, got {type(value).__name__}")
            return value.isoformat()
        if hint in (str, int, float, bool):
            if not _matches(value, hint):
                raise ProtocolError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
            return value
    raise ProtocolError(f"{where}: the protocol has no encoding for {hint!r}")


def _matches(value: Any, hint: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    origin = _origin(hint)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(hint, type) and isinstance(value, hint)


def decode_value(data: Any, hint: Any, where: str = "value") -> Any:
    """The value of type ``hint`` that ``data`` encodes; ProtocolError when it does not fit the schema.

    Records are rebuilt through their constructors, so their validators run (an invalid disk target
    in a :class:`~virtabs.spi.DiskSpec` is the same InvalidArgumentError as locally). The codec compiled
    for ``hint`` (:func:`_decoder`) does the work; when it meets anything it does not expect, the general
    walk below does it again and names the place of the error.
    """
    try:
        return _decoder(hint)(data)
    except _Mismatch:
        return _decode_walk(data, hint, where)


def _decode_walk(data: Any, hint: Any, where: str) -> Any:
    """:func:`decode_value` by walking ``hint`` for each value (every error names its place)."""
    check = _SCALAR_CHECKS.get(hint)
    if check is not None and check(data):
        return data
    if hint is Any:
        return _plain(data, where)
    origin = _origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [o for o in _args(hint) if o is not type(None)]
        if data is None:
            if len(options) < len(_args(hint)):
                return None
            raise ProtocolError(f"{where}: null where {hint} is expected")
        if all(_is_record(o) for o in options) and len(options) > 1:
            if not isinstance(data, dict) or data.get("kind") not in _EVENT_KINDS:
                raise ProtocolError(f"{where}: expected an object with a known 'kind'")
            cls = _EVENT_KINDS[data["kind"]]
            if cls not in options:
                raise ProtocolError(f"{where}: kind {data['kind']!r} is not allowed here")
            return _decode_walk({k: v for k, v in data.items() if k != "kind"}, cls, where)
        if len(options) == 1:
            return _decode_walk(data, options[0], where)
        for option in options:
            if _json_fits(data, option):
                return _decode_walk(data, option, where)
        raise ProtocolError(f"{where}: {type(data).__name__} fits none of {hint}")
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise ProtocolError(f"{where}: expected an array, got {type(data).__name__}")
        item_hint = _args(hint)[0]
        items = [_decode_walk(item, item_hint, f"{where}[{i}]") for i, item in enumerate(data)]
        return tuple(items) if origin is tuple else items
    if origin in (Mapping, dict):
        item_hint = _args(hint)[1]
        if not isinstance(data, dict):
            raise ProtocolError(f"{where}: expected an object, got {type(data).__name__}")
        return {k: _decode_walk(v, item_hint, f"{where}.{k}") for k, v in data.items()}
    if hint is type(None) or hint is None:
        if data is not None:
            raise ProtocolError(f"{where}: expected null")
        return None
    if isinstance(hint, type):
        if _is_record(hint):
            return _decode_record(data, hint, where)
        if issubclass(hint, enum.Flag):
            if not isinstance(data, list) or not all(isinstance(n, str) and n in hint.__members__ for n in data):
                raise ProtocolError(f"{where}: {str(data)[:80]} is not a list of {hint.__name__} names")
            return functools.reduce(operator.or_, (hint[n] for n in data), hint(0))
        if issubclass(hint, enum.Enum):
            if not isinstance(data, str) or data not in hint.__members__:
                raise ProtocolError(f"{where}: {data!r} is not a {hint.__name__} name")
            return hint[data]
        if hint is _dt.datetime:
            if not isinstance(data, str):
                raise ProtocolError(f"{where}: expected ISO 8601 text")
            try:
                return _dt.datetime.fromisoformat(data)
            except ValueError:
                raise ProtocolError(f"{where}: {data[:40]!r} is not an ISO 8601 time") from None
        if hint in (str, int, float, bool):
            if not _matches(data, hint):
                raise ProtocolError(f"{where}: expected {hint.__name__}, got {type(data).__name__}")
            return float(data) if hint is float else data
    raise ProtocolError(f"{where}: the protocol has no decoding for {hint!r}")


def _json_fits(data: Any, hint: Any) -> bool:
    if hint in (str, int, float, bool):
        return _matches(data, hint)
    if isinstance(hint, type) and issubclass(hint, enum.Flag):
        return isinstance(data, list)
    if (isinstance(hint, type) and issubclass(hint, enum.Enum)) or hint is _dt.datetime:
        return isinstance(data, str)
    if _origin(hint) in (list, tuple):
        return isinstance(data, list)
    return isinstance(data, dict)


def _decode_record(data: Any, cls: type, where: str) -> Any:
    if not isinstance(data, dict):
        raise ProtocolError(f"{where}: expected an object for {cls.__name__}, got {type(data).__name__}")
    fields = _field_types(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ProtocolError(f"{where}: unknown field(s) of {cls.__name__}: {', '.join(unknown)}")
    kwargs = {name: _decode_walk(value, fields[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ProtocolError(f"{where}: cannot build {cls.__name__}: {exc}") from None


# --- the schema compiled: one codec per type hint ---------------------------------------------------


class _Mismatch(Exception):
    """A compiled codec met a value it does not expect: the general walk takes over (and names the error)."""


_Codec = Callable[[Any], Any]


def _walked(walk: Callable[[Any, Any, str], Any], hint: Any) -> _Codec:
    """A codec that walks ``hint`` (for the rare hints not compiled); its errors become a mismatch."""

    def codec(value: Any) -> Any:
        try:
            return walk(value, hint, "value")
        except ProtocolError:
            raise _Mismatch from None

    return codec


def _single_optional(hint: Any) -> Any:
    """``X`` for a hint ``X | None`` (one option besides None), else None."""
    if _origin(hint) not in (typing.Union, types.UnionType):
        return None
    options = [o for o in _args(hint) if o is not type(None)]
    return options[0] if len(options) == 1 and len(options) < len(_args(hint)) else None


@functools.cache
def _encoder(hint: Any) -> _Codec:
    """The compiled encoder of ``hint``: what :func:`_encode_walk` does, decided once per hint."""
    check = _SCALAR_CHECKS.get(hint)
    if check is not None:

        def scalar(value: Any) -> Any:
            if check(value):
                return value
            raise _Mismatch

        return scalar
    inner = _single_optional(hint)
    if inner is not None and inner not in _EVENT_NAMES:  # an event in an optional gets its "kind": walked
        inner_codec = _encoder(inner)

        def optional(value: Any) -> Any:
            if value is None:
                return None
            if not _matches(value, inner):
                raise _Mismatch
            return inner_codec(value)

        return optional
    origin = _origin(hint)
    if origin in (list, tuple) and len(_args(hint)) in (1, 2) and (len(_args(hint)) == 1 or _args(hint)[1] is ...):
        item_codec = _encoder(_args(hint)[0])

        def sequence(value: Any) -> Any:
            if not isinstance(value, list | tuple):
                raise _Mismatch
            return [item_codec(item) for item in value]

        return sequence
    if origin in (Mapping, dict):
        key_codec, value_codec = _encoder(_args(hint)[0]), _encoder(_args(hint)[1])

        def mapping(value: Any) -> Any:
            if not isinstance(value, Mapping):
                raise _Mismatch
            return {key_codec(k): value_codec(v) for k, v in value.items()}

        return mapping
    if isinstance(hint, type) and origin is None:
        if _is_record(hint):
            fields = tuple((name, _encoder(field_hint)) for name, field_hint in _field_types(hint).items())

            def record(value: Any) -> Any:
                if not isinstance(value, hint):
                    raise _Mismatch
                return {name: codec(getattr(value, name)) for name, codec in fields}

            return record
        if issubclass(hint, enum.Enum) and not issubclass(hint, enum.Flag):

            def member(value: Any) -> Any:
                if not isinstance(value, hint):
                    raise _Mismatch
                return value.name

            return member
        if hint is _dt.datetime:

            def moment(value: Any) -> Any:
                if not isinstance(value, _dt.datetime):
                    raise _Mismatch
                return value.isoformat()

            return moment
    return _walked(_encode_walk, hint)


@functools.cache
def _decoder(hint: Any) -> _Codec:
    """The compiled decoder of ``hint``: what :func:`_decode_walk` does, decided once per hint."""
    check = _SCALAR_CHECKS.get(hint)
    if check is not None:

        def scalar(data: Any) -> Any:
            if check(data):
                return data
            raise _Mismatch

        return scalar
    inner = _single_optional(hint)
    if inner is not None:
        inner_codec = _decoder(inner)

        def optional(data: Any) -> Any:
            return None if data is None else inner_codec(data)

        return optional
    origin = _origin(hint)
    if origin in (list, tuple) and len(_args(hint)) in (1, 2) and (len(_args(hint)) == 1 or _args(hint)[1] is ...):
        item_codec = _decoder(_args(hint)[0])
        as_tuple = origin is tuple

        def sequence(data: Any) -> Any:
            if not isinstance(data, list):
                raise _Mismatch
            items = [item_codec(item) for item in data]
            return tuple(items) if as_tuple else items

        return sequence
    if origin in (Mapping, dict):
        item_codec = _decoder(_args(hint)[1])

        def mapping(data: Any) -> Any:
            if not isinstance(data, dict):
                raise _Mismatch
            return {k: item_codec(v) for k, v in data.items()}

        return mapping
    if isinstance(hint, type) and origin is None:
        if _is_record(hint):
            codecs = {name: _decoder(field_hint) for name, field_hint in _field_types(hint).items()}
            cls = hint

            def record(data: Any) -> Any:
                if not isinstance(data, dict):
                    raise _Mismatch
                try:
                    kwargs = {name: codecs[name](value) for name, value in data.items()}
                except KeyError:  # an unknown field
                    raise _Mismatch from None
                try:
                    return cls(**kwargs)
                except TypeError:
                    raise _Mismatch from None

            return record
        if issubclass(hint, enum.Enum) and not issubclass(hint, enum.Flag):
            members = hint.__members__

            def member(data: Any) -> Any:
                found = members.get(data) if isinstance(data, str) else None
                if found is None:
                    raise _Mismatch
                return found

            return member
    return _walked(_decode_walk, hint)


# --- method schemas ------------------------------------------------------------------------------


@attrs.frozen
class MethodSchema:
    """One SPI method on the wire: its parameters (name -> type hint) and its result's type hint."""

    name: str
    params: Mapping[str, Any]
    result: Any

    def encode_args(self, args: tuple[Any, ...]) -> dict[str, Any]:
        """Positional SPI arguments as the request's ``args`` object."""
        if len(args) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        return {
            name: encode_value(value, hint, f"{self.name}.{name}")
            for (name, hint), value in zip(self.params.items(), args, strict=True)
        }

    def decode_args(self, data: Any) -> dict[str, Any]:
        """A request's ``args`` object as keyword arguments; ProtocolError when names or types differ."""
        if not isinstance(data, dict):
            raise ProtocolError(f"{self.name}: 'args' must be an object")
        if set(data) != set(self.params):
            missing = sorted(set(self.params) - set(data))
            extra = sorted(set(data) - set(self.params))
            raise ProtocolError(f"{self.name}: arguments differ (missing: {missing}, unknown: {extra})")
        return {name: decode_value(data[name], hint, f"{self.name}.{name}") for name, hint in self.params.items()}


@functools.cache
def method_schema(method: str) -> MethodSchema:
    """The wire schema of SPI method ``method``, read from :class:`virtabs.spi.Driver`'s signature."""
    function: Callable[..., Any] = getattr(Driver, method)
    hints = typing.get_type_hints(function)
    params = {name: hints[name] for name, param in inspect.signature(function).parameters.items() if name != "self"}
    return MethodSchema(method, params, hints.get("return", type(None)))


# --- errors on the wire ----------------------------------------------------------------------------

_ERROR_CLASSES: dict[str, type[VirtabsError]] = {
    name: cls for name, cls in vars(_errors).items() if isinstance(cls, type) and issubclass(cls, VirtabsError)
}
_ERROR_CLASSES["ProtocolError"] = ProtocolError


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """``{"class", "code", "message"}`` for an error (already redacted by the gate that raised it)."""
    if isinstance(exc, VirtabsError):
        # A subclass the peer may not know travels as the nearest class of the public tree.
        cls: type = type(exc)
        while cls.__name__ not in _ERROR_CLASSES and cls is not VirtabsError:
            cls = cls.__mro__[1]
        return {"class": cls.__name__, "code": int(exc.code), "message": exc.message}
    return {
        "class": "OperationFailedError",
        "code": int(ErrorCode.OPERATION_FAILED),
        "message": f"{type(exc).__name__} in the remote helper",
    }


def error_from_wire(data: Any, where: str) -> VirtabsError:
    """The virtabs error an error object names: its class when it is one of the public tree, else by code.

    ``where`` (``on host h``) is added to the message. Never builds a class the tree does not hold.
    """
    if not isinstance(data, dict):
        return ProtocolError(f"a malformed error came back {where}")
    message = data.get("message")
    code = data.get("code")
    cls = _ERROR_CLASSES.get(str(data.get("class")))
    if cls is None:
        cls = _errors.error_class_for_code(code) if isinstance(code, int) else OperationFailedError
    text = message if isinstance(message, str) else "(no message)"
    return cls(f"{text} ({where})" if where else text)
