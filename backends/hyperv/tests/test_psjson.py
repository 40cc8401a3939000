"""Windows PowerShell 5.1 JSON quirks, parsed defensively."""

from __future__ import annotations

import datetime as _dt

import pytest

from virtabs_hyperv._psjson import PSJsonError, as_datetime, as_int, as_list, parse
from virtabs_hyperv._states import libvirt_state, native_name


def test_empty_one_and_many() -> None:
    assert as_list(parse(b"")) == []  # an empty pipeline prints nothing
    assert as_list(parse(b'{"N":"a"}\r\n')) == [{"N": "a"}]  # one object, unwrapped by 5.1
    assert as_list(parse(b'[{"N":"a"},{"N":"b"}]')) == [{"N": "a"}, {"N": "b"}]
    assert as_list(parse("null")) == []


def test_not_json() -> None:
    with pytest.raises(PSJsonError, match="Name"):
        parse(b"\r\nName   State\r\n----   -----\r\n")


def test_dates() -> None:
    v = parse(rb'{"C":"\/Date(1700000000123)\/"}')["C"]
    assert as_datetime(v) == _dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=_dt.UTC)
    assert as_datetime("/Date(0+0100)/") == _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
    assert as_datetime("2024-01-02T03:04:05Z") == _dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=_dt.UTC)
    assert as_datetime(None) is None and as_datetime("garbage") is None


def test_ints() -> None:
    assert as_int(5) == 5 and as_int("7") == 7 and as_int(None) is None and as_int(True, 0) == 0


def test_vm_states() -> None:
    assert native_name(2) == "Running" and native_name("2") == "Running" and native_name("Paused") == "Paused"
    assert native_name(12345) == "Unknown(12345)"
    assert libvirt_state("Running") == "running"
    assert libvirt_state("Saved") == "shutoff"
    assert libvirt_state("Stopping") == "shutdown"
    assert libvirt_state("RunningCritical") == "running"
    assert libvirt_state("Unknown(12345)") == "nostate"
