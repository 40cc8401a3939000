"""Values that pass the core's spec rules but are hostile to some native format (issue 21.1).

The core refuses control characters in every spec text field; everything else is a renderer's job: a
comma ends a QEMU option or an xl vif key, a quote ends a PowerShell or xl.cfg string, ``$(...)`` runs in
a shell, ``=`` splits an environment entry, ``#`` starts a comment, a leading ``-`` looks like an option,
and U+2028 / U+0085 end a line for parsers that follow Unicode. Each backend's tests feed these through
every text field into its renderer and check that the native configuration reads back to exactly the
intended values, and that no hook ran (the fragments that would run a command touch :data:`MARKER`).
"""

from __future__ import annotations

__all__ = ["HOSTILE_FRAGMENTS", "MARKER", "hostile_values"]

MARKER = "/tmp/virtabs-hostile-marker"
"""The file every command-running fragment would create: a test asserts that it does not exist."""

HOSTILE_FRAGMENTS: tuple[str, ...] = (
    ",",
    ",,x=1,script=/bin/touch",
    '"',
    "'",
    "\\",
    '\\"',
    f"$(touch {MARKER})",
    f"`touch {MARKER}`",
    f";touch {MARKER};",
    f"& touch {MARKER}",
    f"| touch {MARKER}",
    "=",
    "a=b",
    "#",
    " # comment",
    "-x",
    "--help",
    "\u2028lxc.hook.pre-start = /bin/touch /tmp/virtabs-hostile-marker",
    "\u0085x",
    "\u2029",
    "<x/>&amp;]]>",
    "%s%n",
    "{}",
    "[ ]",
    "@",
    "*?",
    "é ü 中",
)
"""Fragments hostile to one native format or another, none holding a C0 control or DEL."""


def hostile_values(base: str) -> list[str]:
    """``base`` with each fragment appended: what a test puts into one text field."""
    return [base + fragment for fragment in HOSTILE_FRAGMENTS]
