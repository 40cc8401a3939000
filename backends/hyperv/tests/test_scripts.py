"""The driver's script templates: values travel as base64 data, and every template is valid for the
simulator's PowerShell parser (a typo in a template fails here before any driver test runs)."""

from __future__ import annotations

import base64
import json
import re

import pytest
from virtabs_hyperv_sim._ps import Parser

from virtabs_hyperv._scripts import CMD_LIMIT, SCRIPTS, ScriptTooLong, command_line, encode_data

EVIL = "x'; Remove-VM -Name * -Force; '"


def test_values_are_never_spliced_into_script_text() -> None:
    for script in SCRIPTS.values():
        text = script.render({"id": "a", "name": EVIL, "path": EVIL + '"$(rm)`'})
        assert EVIL not in text and "$(rm)" not in text
        data = re.search(r"FromBase64String\('([^']*)'\)", text)
        assert data is not None
        assert json.loads(base64.b64decode(data.group(1)))["name"] == EVIL
        # outside the data literal, the text is the template's own constant text
        assert text.replace(data.group(1), "") == script.render({}).replace(encode_data({}), "")


def test_encode_data_alphabet() -> None:
    assert re.fullmatch(r"[A-Za-z0-9+/=]*", encode_data({"n": "é'\"`$;|\n\u2603"}))


@pytest.mark.parametrize("op", sorted(SCRIPTS))
def test_template_parses(op: str) -> None:
    Parser(SCRIPTS[op].render({"id": "x"})).parse_script()


def test_command_line() -> None:
    line = command_line("'x'")
    assert line.startswith("powershell -NoProfile -NonInteractive -EncodedCommand ")
    assert base64.b64decode(line.rsplit(" ", 1)[1]).decode("utf-16-le") == "'x'"
    with pytest.raises(ScriptTooLong):
        command_line("#" * CMD_LIMIT)


def test_every_template_fits_the_command_line() -> None:
    for script in SCRIPTS.values():
        command_line(script.render({"id": "0" * 36, "name": "n" * 200, "path": "p" * 260, "dst": "d" * 260}))
