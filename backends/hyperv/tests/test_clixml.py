"""CLIXML error records (stderr of powershell.exe) -> ErrorRecord, on SYNTHETIC records written here (the real
captures are tested in test_real_outputs.py)."""

from __future__ import annotations

from virtabs_hyperv._clixml import parse_errors


def test_cmdlet_record_and_id_prefix() -> None:
    lines = [
        'Get-VM : Hyper-V was unable to find a virtual machine with name "x".',
        "At line:3 char:7",
        "+ $vm = Hyper-V\\Get-VM -Name x",
        "+       ~~~~~~~~~~~~~~~~~~~~~~",
        "    + CategoryInfo          : InvalidArgument: (x:String) [Get-VM], VirtualizationException",
        "    + FullyQualifiedErrorId : InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM",
        " ",
    ]
    body = "".join(f'<S S="Error">{line}_x000D__x000A_</S>' for line in lines)
    [rec] = parse_errors(f'#< CLIXML\r\n<Objs xmlns="http://schemas.microsoft.com/powershell/2004/04">{body}</Objs>')
    assert rec.message == 'Hyper-V was unable to find a virtual machine with name "x".'
    assert rec.command == "Get-VM" and rec.has_id("InvalidParameter") and not rec.has_id("Invalid")


def test_two_records_and_escapes() -> None:
    one = "".join(
        f'<S S="Error">{x}_x000D__x000A_</S>'
        for x in [
            "Write-Error -Message $a.m : tab_x0009_here",
            "At line:1 char:1",
            "+ Write-Error",
            "+ ~~~",
            "    + CategoryInfo          : ObjectNotFound: (:) [Write-Error], WriteErrorException",
            "    + FullyQualifiedErrorId : VirtabsNoDomain",
            " ",
        ]
    )
    two = "".join(
        f'<S S="Error">{x}_x000D__x000A_</S>'
        for x in [
            "boom",
            "At line:2 char:1",
            "+ throw 'boom'",
            "+ ~~~~",
            "    + CategoryInfo          : OperationStopped: (boom:String) [], RuntimeException",
            "    + FullyQualifiedErrorId : boom",
            " ",
        ]
    )
    recs = parse_errors(f"#< CLIXML\r\n<Objs>{one}{two}</Objs>".encode())
    assert [(r.message, r.error_id) for r in recs] == [("tab\there", "VirtabsNoDomain"), ("boom", "boom")]


def test_plain_and_broken_stderr() -> None:
    assert parse_errors(b"") == []
    [rec] = parse_errors(b"The command line is too long.\r\n")
    assert rec.message == "The command line is too long." and rec.error_id == ""
    [rec] = parse_errors(b'#< CLIXML\r\n<Objs><S S="Error">half')
    assert "half" in rec.message
