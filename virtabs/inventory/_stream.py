"""The jsonl stream: each host written the moment it is done, read back for ``--resume`` and assembled.

A host is a *block* of lines, written (and flushed) in one piece: one line per domain,
``{"host": {...host fields}, "domain": {...}}``, then the line closing the host,
``{"host": {...}, "domain": null, "host_end": {"generated_at", "domains", "pools", "networks"}}``.
A host counts as written only once its closing line is there: a run killed in the
middle of a write leaves at most one torn block at the end, which readers skip.
When the same host has several blocks (a resumed run appends to a stream), the last
complete one wins.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import attrs

from .._errors import InvalidArgumentError
from ._collect import HostTarget, host_key
from ._model import SCHEMA_VERSION, HostInventory, format_time

__all__ = ["HostBlock", "JsonlWriter", "assemble", "host_lines", "read_blocks"]

HostKey = tuple[str, str | None]


def _block(fields: Mapping[str, Any], domains: list[Any], pools: Any, networks: Any, generated_at: str) -> str:
    lines = [json.dumps({"host": fields, "domain": dom}, ensure_ascii=False) for dom in domains]
    end = {"generated_at": generated_at, "domains": len(domains), "pools": pools, "networks": networks}
    lines.append(json.dumps({"host": fields, "domain": None, "host_end": end}, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def host_lines(host: HostInventory | Mapping[str, Any], generated_at: _dt.datetime | str) -> str:
    """The jsonl block of one host (``host`` as a :class:`HostInventory` or its schema v3 dict);
    ``generated_at`` is when the run that collected it started."""
    data = host.to_dict() if isinstance(host, HostInventory) else host
    fields = {k: v for k, v in data.items() if k not in ("domains", "pools", "networks")}
    started = generated_at if isinstance(generated_at, str) else format_time(generated_at)
    return _block(fields, data["domains"], data["pools"], data.get("networks"), started)


@attrs.frozen
class HostBlock:
    """Where one host's complete block lies in a stream file, and what it says."""

    key: HostKey
    start: int
    end: int
    ok: bool
    domains: int
    generated_at: str


def read_blocks(path: str | os.PathLike[str]) -> tuple[dict[HostKey, HostBlock], int]:
    """The complete host blocks of a jsonl stream (the last one of each host) and the offset where the
    complete part ends (a torn last block, from a run killed mid-write, lies past it and is ignored).

    Reads line by line: memory holds one line, not the file.
    """
    p = Path(path)
    blocks: dict[HostKey, HostBlock] = {}
    start = offset = 0
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {p}: {exc.strerror or exc}") from None
    with fh:
        for number, raw in enumerate(fh, 1):
            end = offset + len(raw)
            if not raw.endswith(b"\n"):  # a torn last line
                break
            try:
                line = json.loads(raw)
                host = line["host"]
                key = (host["uri"], host["name"])
            except (ValueError, KeyError, TypeError):
                raise InvalidArgumentError(
                    f"{p}, line {number}: not a line of `virtabs inventory --format jsonl`"
                ) from None
            if "host_end" in line:
                end_info = line["host_end"]
                blocks.pop(key, None)  # the newest block of a host goes last (insertion order = stream order)
                blocks[key] = HostBlock(
                    key, start, end, host.get("error") is None, end_info["domains"], end_info["generated_at"]
                )
                start = end
            offset = end
    return blocks, start


def _parse_stream(lines: Iterable[str | bytes]) -> Iterator[dict[str, Any]]:
    """Each complete host of a stream, as a schema v3 host dict with the run start (``_generated_at``)."""
    domains: list[Any] = []
    for raw in lines:
        if not raw.strip():
            continue
        if (isinstance(raw, bytes) and not raw.endswith(b"\n")) or (isinstance(raw, str) and not raw.endswith("\n")):
            break  # a torn last line
        line = json.loads(raw)
        if line.get("domain") is not None:
            domains.append(line["domain"])
            continue
        if "host_end" not in line:
            raise InvalidArgumentError("not a stream of `virtabs inventory --format jsonl`: a host has no closing line")
        end = line["host_end"]
        host = dict(line["host"])
        host["domains"] = domains
        host["pools"] = end["pools"]
        host["networks"] = end.get("networks")  # absent from streams written before schema version 2
        host["_generated_at"] = end["generated_at"]
        yield host
        domains = []


def assemble(
    stream: str | os.PathLike[str] | Iterable[str | bytes],
    order: Iterable[HostTarget] | None = None,
) -> dict[str, Any]:
    """The schema v3 document (``--format json``) of a jsonl stream (a path, or its lines).

    The last complete block of each host counts. With ``order`` (the run's host targets) the
    document holds those hosts in that order (hosts of the stream not among them are left out;
    targets missing from it raise InvalidArgumentError); without it, the hosts in stream order.
    ``generated_at`` is the start of the earliest run whose hosts it holds.
    """
    if isinstance(stream, str | os.PathLike):
        with Path(stream).open("rb") as fh:
            return assemble(fh, order)
    hosts: dict[HostKey, dict[str, Any]] = {}
    for host in _parse_stream(stream):
        key = (host["uri"], host["name"])
        hosts.pop(key, None)
        hosts[key] = host
    if order is not None:
        chosen = []
        for target in order:
            key = host_key(target)
            if key not in hosts:
                raise InvalidArgumentError(f"the stream has no result for host {key[0]}")
            chosen.append(hosts[key])
    else:
        chosen = list(hosts.values())
    starts = [h.pop("_generated_at") for h in chosen]
    failed = sum(1 for h in chosen if h["error"] is not None)
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": min(starts) if starts else format_time(_dt.datetime.now(_dt.UTC)),
        "summary": {
            "hosts": len(chosen),
            "hosts_ok": len(chosen) - failed,
            "hosts_failed": failed,
            "domains": sum(len(h["domains"]) for h in chosen),
        },
        "hosts": chosen,
    }


class JsonlWriter:
    """Writes host blocks to a text stream, each flushed (and, for a file, handed to the OS) at once."""

    def __init__(self, out: IO[str], generated_at: _dt.datetime) -> None:
        self.out = out
        """Where the blocks go (may be replaced between two blocks)."""
        self._generated_at = format_time(generated_at)
        self.hosts = 0
        self.failed = 0
        self.domains = 0

    def write_host(self, host: HostInventory) -> None:
        """Write one host's block and flush it."""
        self._write(host_lines(host, self._generated_at), host.ok, len(host.domains))

    def copy_block(self, text: str, ok: bool, domains: int) -> None:
        """Write a block read from an earlier stream (``--resume``), as it was."""
        self._write(text, ok, domains)

    def _write(self, text: str, ok: bool, domains: int) -> None:
        self.out.write(text)
        self.out.flush()
        self.hosts += 1
        self.domains += domains
        if not ok:
            self.failed += 1
