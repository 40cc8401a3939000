"""Image helpers. Formats are always passed explicitly (``-f``/``-F``); the
only probing call is :func:`probe_format`, used for REUSE_EXT without a format
(the seed allows it there, and never with COPY_RAW).

:func:`chain` reads qcow2 and raw headers in Python (``_headers``) and runs
``qemu-img info -f FORMAT`` layer by layer only for what those do not cover: never
``--backing-chain`` (it would probe a backing file named without a format and open any
protocol a header names)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from virtabs.spi import DriverUnavailableError, OperationFailedError, OperationTimeoutError

from . import _headers
from ._process import run_bounded

__all__ = ["DEFAULT_TIMEOUT", "ImageLayer", "chain", "create", "probe_format", "qemu_img", "resize", "snapshot"]

ImageLayer = dict[str, Any]


DEFAULT_TIMEOUT = 120.0
"""How long one ``qemu-img`` call may take on a connection opened without a timeout."""


def qemu_img(*args: str, timeout: float | None = None, image: str | None = None, pass_fds: Sequence[int] = ()) -> str:
    """Run qemu-img; a failure raises OperationFailedError with its stderr.

    ``timeout`` is the connection's timeout (None: :data:`DEFAULT_TIMEOUT`): past it the call's whole
    process group is killed and OperationTimeoutError names ``image`` and the limit. SIGINT kills it too.
    ``pass_fds`` are descriptors the command names as ``/dev/fd/N``.
    """
    exe = shutil.which("qemu-img")
    if exe is None:
        raise DriverUnavailableError("qemu-img is not installed (Debian: apt install qemu-utils)")
    limit = DEFAULT_TIMEOUT if timeout is None else timeout
    try:
        res = run_bounded([exe, *args], limit, pass_fds=pass_fds)
    except subprocess.TimeoutExpired:
        raise OperationTimeoutError(
            f"qemu-img {args[0]} of image {image or args[-1]} did not finish within {limit:g}s "
            "(the connection's timeout); it was stopped"
        ) from None
    except OSError as exc:
        raise OperationFailedError(f"cannot run qemu-img {args[0]}: {exc}") from None
    if res.returncode != 0:
        raise OperationFailedError(f"qemu-img {' '.join(args)} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def operand(path: str) -> str:
    """``path`` as a qemu-img operand: a relative path starting with ``-`` gets ``./`` so that qemu-img's
    getopt reads it as the file it names, never as an option (``-h`` would print help and exit 0)."""
    return f"./{path}" if path.startswith("-") else path


def chain(
    path: str,
    fmt: str,
    force_share: bool = True,
    timeout: float | None = None,
    image: str | None = None,
    pass_fds: Sequence[int] = (),
) -> list[ImageLayer]:
    """The backing chain of ``path`` opened as ``fmt``, top first, as ``qemu-img info --backing-chain`` gives it.

    qcow2 and raw headers are read in Python (no process); anything unusual (another format,
    encryption, an external data file, a protocol backing name ...) goes to ``qemu-img -f FMT``.
    Refuses a chain where a layer names a backing file without its format (QEMU would have to probe it).
    ``timeout``, ``image`` and ``pass_fds`` go to :func:`qemu_img` (``image``: the name errors give ``path``).
    """
    try:
        layers = [layer.info() for layer in _headers.read_chain(path, fmt)]
    except _headers.Unusual:
        layers = _walk(path, fmt, force_share, timeout, image, pass_fds)
    except OSError as exc:
        raise OperationFailedError(f"cannot read image {image or path} (or its backing chain): {exc}") from None
    for layer in layers:
        if layer.get("backing-filename") and not layer.get("backing-filename-format"):
            raise OperationFailedError(
                f"image {layer.get('filename')} names backing file {layer['backing-filename']} without its format; "
                "refusing to let QEMU probe it (rebase with: qemu-img rebase -u -F FORMAT -b BACKING IMAGE)"
            )
    return layers


def _walk(
    path: str,
    fmt: str,
    force_share: bool,
    timeout: float | None = None,
    image: str | None = None,
    pass_fds: Sequence[int] = (),
) -> list[ImageLayer]:
    """The chain read by ``qemu-img info -f FORMAT`` one layer at a time (``info`` opens no backing file).

    Unlike ``--backing-chain`` it never probes: a layer naming its backing file without a format ends the walk
    (the caller refuses it), and a backing name that is a protocol (``nbd://``, ``json:`` ...) is listed by name
    but never opened: a read does not connect to a network peer an image header names.
    """
    layers: list[ImageLayer] = []
    seen: set[str] = set()
    current, current_fmt = path, fmt
    while True:
        args = ["info", "--output=json", "-f", current_fmt]
        if force_share:
            args.append("-U")
        name = image if current == path and image else current
        layer = json.loads(qemu_img(*args, operand(current), timeout=timeout, image=name, pass_fds=pass_fds))
        if not isinstance(layer, dict):
            raise OperationFailedError(f"qemu-img info {current}: unexpected output")
        layers.append(layer)
        backing = layer.get("full-backing-filename") or layer.get("backing-filename")
        backing_fmt = layer.get("backing-filename-format")
        if not backing or not backing_fmt:
            return layers
        backing, backing_fmt = str(backing), str(backing_fmt)
        if _headers.is_protocol(backing):
            layers.append({"filename": backing, "format": backing_fmt})
            return layers
        real = os.path.realpath(backing)
        if real in seen or len(layers) >= _headers.MAX_CHAIN:
            raise OperationFailedError(f"backing chain of {path} loops or is deeper than {_headers.MAX_CHAIN}")
        seen.add(real)
        current, current_fmt = backing, backing_fmt


def backing_paths(layers: list[ImageLayer]) -> tuple[str, ...]:
    """Absolute paths of the layers below the top, nearest first (a protocol name such as ``nbd://`` as is)."""
    out = []
    for layer in layers[1:]:
        name = str(layer.get("filename", ""))
        keep = name.startswith("/dev/fd") or _headers.is_protocol(name)
        out.append(name if keep else os.path.abspath(name))
    return tuple(out)


def probe_format(path: str, timeout: float | None = None) -> str:
    """The format recorded in an existing image's metadata (probes: REUSE_EXT only, never for COPY_RAW)."""
    out = qemu_img("info", "--output=json", "-U", operand(path), timeout=timeout, image=path)
    return str(json.loads(out)["format"])


def create(
    path: str,
    fmt: str,
    size: int | None,
    backing: str | None = None,
    backing_fmt: str | None = None,
    timeout: float | None = None,
    image: str | None = None,
    pass_fds: Sequence[int] = (),
) -> None:
    """Create an image; a backing file always gets its format (``-F``). ``timeout``, ``image`` and ``pass_fds``
    go to :func:`qemu_img`."""
    args = ["create", "-q", "-f", fmt]
    if backing:
        if not backing_fmt:
            raise OperationFailedError(f"creating {image or path}: the format of backing file {backing} is unknown")
        args += ["-b", backing, "-F", backing_fmt]
    args.append(operand(path))
    if size is not None:
        args.append(str(size))
    qemu_img(*args, timeout=timeout, image=image or path, pass_fds=pass_fds)


def resize(
    path: str,
    fmt: str,
    size: int,
    shrink: bool = False,
    timeout: float | None = None,
    image: str | None = None,
    pass_fds: Sequence[int] = (),
) -> None:
    """Resize an image to ``size`` bytes (``timeout``, ``image`` and ``pass_fds`` go to :func:`qemu_img`)."""
    args = ["resize", "-q", "-f", fmt]
    if shrink:
        args.append("--shrink")
    qemu_img(*args, operand(path), str(size), timeout=timeout, image=image or path, pass_fds=pass_fds)


def snapshot(op: str, path: str, fmt: str, name: str, timeout: float | None = None) -> None:
    """``qemu-img snapshot`` with ``op`` in ``-c`` (create), ``-a`` (apply), ``-d`` (delete), bounded by
    ``timeout`` (the connection's)."""
    # qemu-img snapshot has no -f: name the format through --image-opts (never probe).
    opts = f"driver={fmt},file.driver=file,file.filename={path.replace(',', ',,')}"
    qemu_img("snapshot", op, name, "--image-opts", opts, timeout=timeout, image=path)
