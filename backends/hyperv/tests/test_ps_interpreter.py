"""The simulator's PowerShell subset fails where PowerShell fails (so a backend typo fails a test)."""

from __future__ import annotations

import pytest
from virtabs_hyperv_sim import HyperVHost
from virtabs_hyperv_sim._clixml import error_clixml
from virtabs_hyperv_sim._host import build_commands
from virtabs_hyperv_sim._ps import Interpreter

from virtabs_hyperv._clixml import parse_errors


def run(script: str, host: HyperVHost | None = None) -> tuple[int, list[object], list[str]]:
    h = host or HyperVHost()
    interp = Interpreter(build_commands(h))
    code = interp.run(script)
    return code, interp.output, [e.error_id for e in interp.errors]


def test_unknown_cmdlet() -> None:
    code, _out, ids = run("Hyper-V\\Get-VMM")
    assert (code, ids) == (1, ["CommandNotFoundException"])


def test_unknown_and_ambiguous_parameters() -> None:
    assert run("Hyper-V\\Get-VM -Nmae x")[2] == ["NamedParameterNotFound,Microsoft.HyperV.PowerShell.Commands.GetVM"]
    assert run("Hyper-V\\Stop-VM -W")[2][0].startswith("AmbiguousParameter")  # -WhatIf / -WarningAction
    assert run("ConvertTo-Json -Comp -InputObject 1")[0] == 0  # a unique prefix binds, as in PowerShell


def test_parse_errors() -> None:
    assert run("if ($true) { 'x'")[2] == ["MissingEndCurlyBrace"]
    assert run("'unterminated")[2] == ["TerminatorExpectedAtEndOfString"]
    assert run("$x = 1 -qe 2")[2] == ["UnexpectedToken"]


def test_names_are_case_insensitive() -> None:
    code, out, _ = run("hyper-v\\get-vm | convertto-json -compress")
    assert code == 0 and out == []  # no VM: an empty pipeline prints nothing


def test_one_item_pipeline_is_unwrapped_input_object_is_not() -> None:
    h = HyperVHost()
    h.add_vm("only")
    _, out, _ = run("@(Hyper-V\\Get-VM | ForEach-Object { @{N = $_.Name} }) | ConvertTo-Json -Compress", h)
    assert out == ['{"N":"only"}']
    _, out, _ = run("ConvertTo-Json -Compress -InputObject @(Hyper-V\\Get-VM | ForEach-Object { @{N = $_.Name} })", h)
    assert out == ['[{"N":"only"}]']


def test_enums_are_numbers_and_dates_are_ms() -> None:
    h = HyperVHost()
    vm = h.add_vm("e")
    _, out, _ = run("Hyper-V\\Get-VM | ForEach-Object { @{S = $_.State; C = $_.CreationTime} } | ConvertTo-Json", h)
    ms = int(vm.created.timestamp() * 1000)
    assert out == ['{\n    "S":  3,\n    "C":  "\\/Date(' + str(ms) + ')\\/"\n}']


def test_error_action() -> None:
    code, out, _ = run("Hyper-V\\Get-VM -Name nope -ErrorAction SilentlyContinue; 'after'")
    assert (code, out) == (0, ["after"])
    code, out, ids = run("$ErrorActionPreference = 'Stop'\nHyper-V\\Get-VM -Name nope\n'after'")
    assert (code, out, ids) == (1, [], ["InvalidParameter"])


def test_write_error_record_round_trips_through_the_backend_parser() -> None:
    script = (
        "$ErrorActionPreference = 'Stop'\n"
        "Write-Error -Message 'gone' -Category ObjectNotFound -ErrorId X1 -TargetObject t"
    )
    interp = Interpreter(build_commands(HyperVHost()))
    assert interp.run(script) == 1
    [rec] = parse_errors(error_clixml(interp.errors, script))
    assert (rec.message, rec.category, rec.error_id, rec.command, rec.target) == (
        "gone",
        "ObjectNotFound",
        "X1",
        "Write-Error",
        "t:String",
    )


def test_pipeline_input_to_a_cmdlet_without_pipeline_parameter() -> None:
    assert run("1 | Hyper-V\\Get-VMHost")[2] == ["InputObjectNotBound,Microsoft.HyperV.PowerShell.Commands.GetVMHost"]


@pytest.mark.parametrize("script", ['"double"', "$x = 1 + 2", "Get-VM | % { $_ }"])
def test_outside_the_subset_fails_loudly(script: str) -> None:
    assert run(script)[0] == 1


def test_try_catch_sees_the_error_record_and_exit_sets_the_code() -> None:
    script = (
        "$ErrorActionPreference = 'Stop'\n"
        "try {\n'before'\nHyper-V\\Get-VM -Nmae x\n'after'\n} catch {\n"
        "@{Id = [string]$_.FullyQualifiedErrorId; Category = [string]$_.CategoryInfo.Category; "
        "Exception = [string]$_.Exception.GetType().FullName} | ConvertTo-Json -Compress\nexit 3\n}\n'not reached'\n"
    )
    code, out, ids = run(script)
    assert code == 3 and ids == []  # caught: nothing goes to the error stream
    assert out[0] == "before" and "after" not in out and "not reached" not in out
    assert '"Id":"NamedParameterNotFound,Microsoft.HyperV.PowerShell.Commands.GetVM"' in str(out[1])
    assert '"Category":"InvalidArgument"' in str(out[1])
    assert '"Exception":"System.Management.Automation.ParameterBindingException"' in str(out[1])


def test_try_without_catch_is_a_parse_error() -> None:
    assert run("try { 'x' }\n'y'")[2] == ["MissingCatchOrFinally"]


def test_switches_and_vlan_settings() -> None:
    """Get-VMSwitch (SwitchType as its enum name under [string], the number in JSON) and the VLAN cmdlets."""
    h = HyperVHost()
    h.add_switch("DMZ", "External", "Intel(R) Ethernet Connection I219-LM")
    vm = h.add_vm("v1")
    code, out, _ = run(
        "Hyper-V\\Get-VMSwitch | ForEach-Object { @{T = [string]$_.SwitchType; N = $_.Name} } | ConvertTo-Json -Compress",
        h,
    )
    assert code == 0 and out == ['[{"T":"Internal","N":"Default Switch"},{"T":"External","N":"DMZ"}]']
    assert run("Hyper-V\\Get-VMSwitch -Name DMZ | ConvertTo-Json -Compress", h)[1][0].count('"SwitchType":2') == 1
    assert run("Hyper-V\\Get-VMSwitch -Name nope", h)[2] == [
        "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVMSwitch"
    ]
    assert run("Hyper-V\\Add-VMNetworkAdapter -VM (Hyper-V\\Get-VM -Name v1) -SwitchName DMZ", h)[0] == 0
    assert run("Hyper-V\\Set-VMNetworkAdapterVlan -VMName v1 -Access -VlanId 40", h)[0] == 0
    code, out, _ = run(
        "Hyper-V\\Get-VMNetworkAdapter -VMName v1 | Hyper-V\\Get-VMNetworkAdapterVlan | ForEach-Object { "
        "@{M = [string]$_.OperationMode; V = $_.AccessVlanId} } | ConvertTo-Json -Compress",
        h,
    )
    assert code == 0 and out == ['{"M":"Access","V":40}'] and vm.adapters[0].access_vlan == 40
    assert run("Hyper-V\\Set-VMNetworkAdapterVlan -VMName v1 -Access -Trunk", h)[2][0].startswith(
        "AmbiguousParameterSet"
    )
