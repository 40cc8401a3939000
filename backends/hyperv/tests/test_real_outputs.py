"""The CLIXML/error-view parser on what real PowerShell hosts printed (``real_outputs/``, sources in its
SOURCES.md).

CLIXML carries the console's error view one line per ``<S S="Error">`` node (the pywinrm sample shows it);
the localized and 80-column samples were published as console text, so the tests put their lines into
CLIXML nodes the same way (that wrapping is SYNTHETIC; the lines are the real ones, unchanged).
"""

from __future__ import annotations

from pathlib import Path

from virtabs_hyperv._clixml import parse_errors

REAL = Path(__file__).resolve().parent / "real_outputs"


def real(name: str) -> bytes:
    """A sample's bytes, unchanged."""
    return (REAL / name).read_bytes()


def as_clixml(console: str) -> bytes:
    """SYNTHETIC CLIXML around real console lines: one ``<S S="Error">`` node per line, CR LF escaped, as
    powershell.exe writes a redirected error stream."""
    nodes = "".join(
        f'<S S="Error">{line.replace("&", "&amp;").replace("<", "&lt;")}_x000D__x000A_</S>'
        for line in console.split("\n")[:-1]
    )
    body = f'<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">{nodes}</Objs>'
    return ("#< CLIXML\r\n" + body).encode("utf-8")


def test_every_sample_has_its_source() -> None:
    sources = (REAL / "SOURCES.md").read_text()
    samples = sorted(p.name for p in REAL.iterdir() if p.name != "SOURCES.md")
    assert samples
    for name in samples:
        assert f"`{name}`" in sources, f"{name} is not in SOURCES.md"


def test_pywinrm_capture_progress_then_a_wrapped_message() -> None:
    [rec] = parse_errors(real("pywinrm-test_decode_clixml_error.clixml"))
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


def test_german_position_line_is_not_message() -> None:
    console = real("de-named-parameter-not-found.txt").decode("utf-8")
    [rec] = parse_errors(as_clixml(console))
    assert rec.message == 'Es wurde kein Parameter gefunden, der dem Parameternamen "k" entspricht.'
    assert "Zeile" not in rec.message and "curl" not in rec.message
    assert (rec.command, rec.exception) == ("Invoke-WebRequest", "ParameterBindingException")
    assert rec.error_id == "NamedParameterNotFound,Microsoft.PowerShell.Commands.InvokeWebRequestCommand"
    assert rec.has_id("NamedParameterNotFound")


def test_80_columns_category_info_cut_mid_word() -> None:
    console = real("de-80col-parser-error.txt").decode("utf-8")
    records = parse_errors(as_clixml(console))
    assert len(records) == 1, records  # the continuation "   ception" is no record of its own
    [rec] = records
    assert rec.exception == "ParentContainsErrorRecordException"
    assert (rec.category, rec.error_id) == ("ParserError", "UnexpectedToken")
    # a parse error's message follows its positions; both tokens' messages, no position or code line
    assert rec.message == (
        'Unerwartetes Token "-c" in Ausdruck oder Anweisung. '
        'Unerwartetes Token ""import pygame; print(\'OK\', pygame.__version__)"" in Ausdruck oder Anweisung.'
    )


def test_80_columns_target_wrapped_with_padding() -> None:
    console = real("de-80col-native-command-error.txt").decode("utf-8")
    [rec] = parse_errors(as_clixml(console))
    assert rec.target == "Traceback (most recent call last)::String"
    assert (rec.category, rec.exception, rec.error_id) == ("NotSpecified", "RemoteException", "NativeCommandError")
    assert rec.command == "" and rec.message == "Traceback (most recent call last):"  # "python.exe : " dropped


def test_two_wrapped_records_in_one_stream() -> None:
    # SYNTHETIC concatenation of two real samples: two records, each whole
    both = real("de-80col-native-command-error.txt") + real("de-80col-parser-error.txt")
    records = parse_errors(as_clixml(both.decode("utf-8")))
    assert [(r.exception, r.error_id) for r in records] == [
        ("RemoteException", "NativeCommandError"),
        ("ParentContainsErrorRecordException", "UnexpectedToken"),
    ]


def test_classified_by_what_powershell_does_not_translate() -> None:
    """A German host's error view translates the message, the position line and the category word
    (``Sicherheitsfehler`` for SecurityError); the error id and the exception type stay as they are. The driver
    classifies by those, from the JSON line its scripts' ``catch`` prints (SYNTHETIC here: the fields a German
    host would put there; no real host has printed this line for virtabs) or, failing that, from the error view."""
    from virtabs.spi import AuthError, OperationFailedError

    from virtabs_hyperv._clixml import trapped_error
    from virtabs_hyperv.driver import HypervDriver

    line = (
        '{"VirtabsError":{"Id":"UnauthorizedAccess","Category":"SecurityError",'
        '"Exception":"System.Management.Automation.PSSecurityException","Target":"",'
        '"Message":"Die Datei kann nicht geladen werden, da die Ausf\\u00fchrung von Skripts deaktiviert ist."}}'
    )
    trapped = trapped_error(b"partial output\r\n" + line.encode() + b"\r\n")
    assert trapped is not None
    assert (trapped.error_id, trapped.category, trapped.exception) == (
        "UnauthorizedAccess",
        "SecurityError",
        "PSSecurityException",
    )
    assert "Ausführung" in trapped.message
    assert isinstance(HypervDriver._error([trapped], 1, "x", OperationFailedError), AuthError)
    # the real German view of a parameter error: classified by its exception type, not by its words
    [rec] = parse_errors(as_clixml(real("de-named-parameter-not-found.txt").decode("utf-8")))
    error = HypervDriver._error([rec], 1, "x", OperationFailedError)
    assert isinstance(error, OperationFailedError) and "rejected the driver's script" in str(error)
    assert trapped_error(b"") is None and trapped_error(b'{"Name":"vm"}\r\n') is None


def test_the_simulator_serialises_a_switch_as_windows_does() -> None:
    """A real external switch through ConvertTo-Json: SwitchType is the enum's number (2), which is why the
    driver's template reads ``[string]$_.SwitchType`` (the name); the simulator's VMSwitch serialises alike."""
    import json

    from virtabs_hyperv_sim import HyperVHost
    from virtabs_hyperv_sim._host import build_commands
    from virtabs_hyperv_sim._ps import Interpreter

    sample = json.loads(real("get-vmswitch-external-json-notes.txt"))
    host = HyperVHost()
    host.add_switch(sample["Name"], "External", sample["NetAdapterInterfaceDescription"])
    interp = Interpreter(build_commands(host))
    code = interp.run(
        "Hyper-V\\Get-VMSwitch -Name External | ForEach-Object { @{Name = $_.Name; SwitchType = $_.SwitchType; "
        "NetAdapterInterfaceDescription = $_.NetAdapterInterfaceDescription} } | ConvertTo-Json -Compress"
    )
    assert code == 0 and json.loads(interp.output[0]) == sample
