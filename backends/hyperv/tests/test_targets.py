"""Disk target names <-> Hyper-V controller slots, and the CLIXML escaping round trip."""

from __future__ import annotations

import pytest
from virtabs_hyperv_sim._clixml import clixml_escape

from virtabs_hyperv._clixml import parse_errors
from virtabs_hyperv._targets import IDE, SCSI, slot_for, target_for


@pytest.mark.parametrize(
    ("target", "bus", "slot"),
    [
        ("vda", "scsi", (SCSI, 0, 0)),
        ("vdb", "virtio", (SCSI, 0, 1)),
        ("sdb", "scsi", (SCSI, 0, 1)),
        ("vdz", "scsi", (SCSI, 0, 25)),
        ("vdaa", "scsi", (SCSI, 0, 26)),
        ("vdbm", "scsi", (SCSI, 1, 0)),
        ("hda", "ide", (IDE, 0, 0)),
        ("hdd", "ide", (IDE, 1, 1)),
        ("vdb", "ide", (IDE, 0, 1)),
    ],
)
def test_slots(target: str, bus: str, slot: tuple[int, int, int]) -> None:
    assert slot_for(target, bus) == slot
    expected = ("hd" if slot[0] == IDE else "vd") + target[2:]
    assert target_for(*slot) == expected


@pytest.mark.parametrize("target", ["xda", "hde", "vd", "vdA", "vd1", "vdzzzz"])
def test_no_slot(target: str) -> None:
    with pytest.raises(ValueError, match=repr(target)):
        slot_for(target)


def test_every_scsi_slot_round_trips() -> None:
    for number in range(4):
        for location in range(64):
            assert slot_for(target_for(SCSI, number, location)) == (SCSI, number, location)


def test_clixml_escaping_round_trips() -> None:
    text = "path C:\\_x\\a\tb <&> 'q'"
    body = f'<S S="Error">{clixml_escape(text + chr(13) + chr(10))}</S>'
    [rec] = parse_errors(f"#< CLIXML\r\n<Objs>{body}</Objs>")
    assert rec.message == text


def test_error_records_map_to_virtabs_errors() -> None:
    import virtabs

    from virtabs_hyperv._clixml import ErrorRecord
    from virtabs_hyperv.driver import HypervDriver

    def err(rec: ErrorRecord, not_found: type[virtabs.VirtabsError] = virtabs.OperationFailedError) -> object:
        return HypervDriver._error([rec], 1, "domain 'd'", not_found)

    missing = ErrorRecord(
        'Hyper-V was unable to find a virtual machine with id "x".',
        "InvalidArgument",
        "x:Guid",
        "Get-VM",
        "VirtualizationException",
        "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM",
    )
    assert isinstance(err(missing, virtabs.NoDomainError), virtabs.NoDomainError)
    assert isinstance(err(ErrorRecord("gone", error_id="VirtabsNoDomain")), virtabs.NoDomainError)
    assert isinstance(err(ErrorRecord("gone", error_id="VirtabsNoSnapshot")), virtabs.NoSnapshotError)
    state = ErrorRecord("'d' failed to start.", "InvalidOperation", command="Start-VM")
    e = err(state)
    assert isinstance(e, virtabs.OperationInvalidError) and "failed to start" in str(e)
    typo = ErrorRecord(
        "A parameter cannot be found that matches parameter name 'Nmae'.",
        "InvalidArgument",
        command="Get-VM",
        exception="ParameterBindingException",
    )
    assert type(err(typo)) is virtabs.OperationFailedError
    assert isinstance(err(ErrorRecord("Access is denied.", "PermissionDenied")), virtabs.AuthError)
    assert type(HypervDriver._error([], 3, "x", virtabs.OperationFailedError)) is virtabs.OperationFailedError
