"""The CLI's output helpers: sizes and JSON conversion."""

from __future__ import annotations

import datetime as dt

import pytest

from virtabs import BlockJobInfo, BlockJobType, Capability, DomainState
from virtabs.cli._output import format_size, parse_size, to_jsonable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096", 4096),
        (4096, 4096),
        ("512M", 512 << 20),
        ("512MiB", 512 << 20),
        ("10G", 10 << 30),
        ("10g", 10 << 30),
        ("1.5G", 3 << 29),
        ("2T", 2 << 40),
        ("1k", 1024),
        ("1GB", 10**9),
        ("7 B", 7),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "10X", "-5", "1.5", "G"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "expected"),
    [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (2 << 30, "2.0 GiB"), (576 << 20, "576.0 MiB")],
)
def test_format_size(size: int | None, expected: str) -> None:
    assert format_size(size) == expected


def test_to_jsonable() -> None:
    info = BlockJobInfo(type=BlockJobType.COPY, cur=1, end=2, bandwidth=0, ready=False, disk="vda")
    assert to_jsonable(info) == {
        "type": "copy",
        "cur": 1,
        "end": 2,
        "bandwidth": 0,
        "ready": False,
        "disk": "vda",
    }
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert to_jsonable({"at": when, "state": DomainState.SHUTOFF, "cap": Capability.BLOCK_COPY, "t": (1, 2)}) == {
        "at": "2026-01-02T03:04:05+00:00",
        "state": "shutoff",
        "cap": "block.copy",
        "t": [1, 2],
    }
    assert to_jsonable({Capability.EVENTS: frozenset({2, 1})}) == {"events": [1, 2]}
