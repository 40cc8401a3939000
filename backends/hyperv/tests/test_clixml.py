"""CLIXML error records (stderr of powershell.exe) -> ErrorRecord."""

from __future__ import annotations

from virtabs_hyperv._clixml import parse_errors

# Captured from a real powershell.exe by pywinrm's own tests (winrm/tests/test_session.py, pywinrm 0.5.0):
# progress records first, then an error wrapped over two console lines.
REAL = (
    b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj S="progress" '
    b'RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN><MS><I64 '
    b'N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1'
    b"</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj><S S=\"Error\">fake : The term 'fake' is not "
    b"recognized as the name of a cmdlet, function, script file, or operable program. Check _x000D__x000A_</S><S "
    b'S="Error">the spelling of the name, or if a path was included, verify that the path is correct and try again.'
    b'_x000D__x000A_</S><S S="Error">At line:1 char:1_x000D__x000A_</S><S S="Error">+ fake cmdlet_x000D__x000A_</S>'
    b'<S S="Error">+ ~~~~_x000D__x000A_</S><S S="Error">    + CategoryInfo          : ObjectNotFound: (fake:String) '
    b'[], CommandNotFoundException_x000D__x000A_</S><S S="Error">    + FullyQualifiedErrorId : '
    b'CommandNotFoundException_x000D__x000A_</S><S S="Error"> _x000D__x000A_</S></Objs>'
)


def test_real_powershell_record() -> None:
    [rec] = parse_errors(REAL)
    assert rec.message == (
        "The term 'fake' is not recognized as the name of a cmdlet, function, script file, or operable program. "
        "Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
    )
    assert (rec.category, rec.target, rec.command, rec.exception, rec.error_id) == (
        "ObjectNotFound",
        "fake:String",
        "",
        "CommandNotFoundException",
        "CommandNotFoundException",
    )


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
