"""A stand-in for Xen 4.17's ``xl`` that replays the real outputs in ``recorded/``: test infrastructure.

The fast driver suite (``test_xen_fast_driver.py``) puts this script first on the driver's ``PATH`` as
``xl`` (through a small ``sh`` wrapper), so the real :class:`~virtabs_xen.driver.XenDriver` runs its
real argv lists and ``sh -c`` scripts against it, in seconds and without Xen. It is not a simulator of
Xen: it knows exactly one guest, ``rec1`` (the lab guest the recordings were taken from: domid 1,
UUID 6f1c5f0e-..., 128 MiB, one vCPU, one disk, one vif) next to ``Domain-0``, and it answers only
what was recorded. Everything else exits 2 with a message naming this stand-in, so a test that drifts
off the recordings fails loudly instead of reading an invented answer.

* ``ip -json -details link show`` / ``ip -json addr show`` (the driver's network sections; the test's
  ``ip`` wrapper calls this script with ``--as-ip``): without rec1 ``ip_link_idle.json`` /
  ``ip_addr_idle.json`` as recorded; with rec1 ``ip_link_net1.json`` / ``ip_addr_net1.json``, recorded
  with the lab guest ``net1`` of domid 1, whose vif 0 (``vif1.0``) is a port of ``xenbr0`` as rec1's
  vif 0 is (a second vif, ``vif1.1`` on ``vtnet0``, belongs to no vif of rec1: a port without a NIC).
  Any other ``ip`` command exits 2.

State (a JSON file in ``$XL_STANDIN_STATE``): whether ``rec1`` runs and whether it is paused.
Every call appends its argv (without ``xl``) as one JSON line to ``$XL_STANDIN_STATE/argv.jsonl``.

What is replayed byte for byte, and what is derived (by cutting and joining lines of real captures):

* ``xl info``: ``info.txt`` as recorded.
* ``xl list`` (no name): ``list_running.txt`` with rec1 running, ``list_dom0_only.txt`` without rec1.
  rec1 paused has no such recording: exit 2.
* ``xl list -v`` (no name): the header and the ``Domain-0`` row of ``list_v_running.txt``, then rec1's
  row when it exists: the running row of ``list_v_running.txt``, or the paused row of
  ``list_v_paused.txt``. With rec1 running this is ``list_v_running.txt`` itself; the other two
  states are derived (the real ``xl list -v`` prints one row per domain under the same header).
* ``xl list -v NAME``: the header and NAME's row, as ``list_v_paused.txt`` (a real ``xl list -v rec1``)
  shows; a name that does not exist gets ``list_invalid_name.txt`` with that name in place of the
  recorded one, exit 1 (derived).
* ``xl list -l rec1``: ``list_long_rec1.json`` as recorded. ``xl list -l`` (no name) without rec1:
  ``list_long_dom0.json``; with rec1: the two recorded array elements joined into one array in domid
  order, as xl prints them (derived).
* ``xl create [-p] CFG``: CFG must name ``rec1`` (``name = "rec1"``); rec1 then runs (or is paused with
  ``-p``). ``xl pause|unpause|destroy [--] rec1`` change the state. These print nothing here: the
  real ``Parsing config from ...`` line of ``xl create`` was not recorded, so it is not made up, and
  the driver reads no output of these commands. A missing domain gets the derived
  invalid-identifier answer above (exit 1), as the lab shows for ``xl pause`` of an unknown name.
* ``xl save [--] rec1 PATH``: rec1 stops, and PATH is written with this stand-in's own image, a JSON
  object ``{"xl-standin-image": "rec1"}``: not Xen's format, nothing reads it but ``xl restore`` here.
  ``xl restore [-p] [--] PATH`` of such an image runs rec1 again (paused with ``-p``: the real xl
  unpauses a restored domain unless ``-p``, whatever its state when saved); any other file, or rec1
  already there, exits 2. Neither prints anything here: xl's progress lines on stderr were not
  recorded, and the driver reads no output of either.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

RECORDED = Path(__file__).resolve().parent / "recorded"
GUEST = "rec1"
_RECORDED_BAD_NAME = "a b; rm -rf /"  # the name in list_invalid_name.txt


def _read(name: str) -> str:
    return (RECORDED / name).read_text()


def _lines(name: str) -> list[str]:
    return _read(name).splitlines(keepends=True)


class _State:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.json"
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.domains: dict[str, dict[str, bool]] = data.get("domains", {})

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"domains": self.domains}))
        tmp.replace(self.path)


def _unknown(argv: list[str]) -> int:
    sys.stderr.write(f"xl stand-in: no recorded output for xl {' '.join(argv)}\n")
    return 2


def _no_domain(name: str) -> int:
    line = _read("list_invalid_name.txt")
    assert line.startswith(_RECORDED_BAD_NAME + " ")
    sys.stderr.write(name + line[len(_RECORDED_BAD_NAME) :])
    return 1


def _split(args: list[str]) -> tuple[list[str], list[str]]:
    """Options and positional arguments (everything after ``--`` is positional)."""
    options: list[str] = []
    names: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            names.extend(args[index + 1 :])
            break
        (options if arg.startswith("-") else names).append(arg)
    return options, names


def _row(state: _State, name: str) -> str:
    """rec1's ``xl list -v`` row in its current state (a recorded row)."""
    if state.domains[name]["paused"]:
        return _lines("list_v_paused.txt")[1]
    return _lines("list_v_running.txt")[2]


def _long_elements(text: str) -> str:
    """The elements of a recorded ``xl list -l`` array, without the brackets."""
    assert text.startswith("[\n") and text.endswith("\n]\n\n")
    return text[2:-4]


def _list(state: _State, args: list[str]) -> int:
    options, names = _split(args)
    if len(names) > 1 or not set(options) <= {"-v", "-l"} or {"-v", "-l"} <= set(options):
        return _unknown(["list", *args])
    verbose_rows = _lines("list_v_running.txt")
    if names:
        name = names[0]
        if name != "Domain-0" and name not in state.domains:
            return _no_domain(name)
        if "-l" in options:
            if name != GUEST:
                return _unknown(["list", *args])
            sys.stdout.write(_read("list_long_rec1.json"))
        elif "-v" in options:
            sys.stdout.write(verbose_rows[0] + (verbose_rows[1] if name == "Domain-0" else _row(state, name)))
        else:
            return _unknown(["list", *args])
        return 0
    if "-l" in options:
        if GUEST in state.domains:
            dom0 = _long_elements(_read("list_long_dom0.json"))
            guest = _long_elements(_read("list_long_rec1.json"))
            sys.stdout.write("[\n" + dom0 + ",\n" + guest + "\n]\n\n")
        else:
            sys.stdout.write(_read("list_long_dom0.json"))
    elif "-v" in options:
        sys.stdout.write(verbose_rows[0] + verbose_rows[1] + (_row(state, GUEST) if GUEST in state.domains else ""))
    elif GUEST not in state.domains:
        sys.stdout.write(_read("list_dom0_only.txt"))
    elif not state.domains[GUEST]["paused"]:
        sys.stdout.write(_read("list_running.txt"))
    else:
        return _unknown(["list", *args])
    return 0


def _create(state: _State, args: list[str]) -> int:
    options, names = _split(args)
    if len(names) != 1 or not set(options) <= {"-p"}:
        return _unknown(["create", *args])
    found = re.search(r'^name = "([^"]*)"$', Path(names[0]).read_text(), re.MULTILINE)
    if found is None or found.group(1) != GUEST or GUEST in state.domains:
        sys.stderr.write(f"xl stand-in: only a stopped {GUEST!r} can be created (the recorded guest)\n")
        return 2
    state.domains[GUEST] = {"paused": "-p" in options}
    state.save()
    return 0


def _change(state: _State, command: str, args: list[str]) -> int:
    options, names = _split(args)
    if options or len(names) != 1:
        return _unknown([command, *args])
    name = names[0]
    if name not in state.domains:
        return _no_domain(name)
    if command == "destroy":
        del state.domains[name]
    else:
        state.domains[name]["paused"] = command == "pause"
    state.save()
    return 0


_IMAGE_KEY = "xl-standin-image"


def _save(state: _State, args: list[str]) -> int:
    options, names = _split(args)
    if options or len(names) != 2:
        return _unknown(["save", *args])
    name, path = names
    if name not in state.domains:
        return _no_domain(name)
    Path(path).write_text(json.dumps({_IMAGE_KEY: name}))
    del state.domains[name]
    state.save()
    return 0


def _restore(state: _State, args: list[str]) -> int:
    options, names = _split(args)
    if len(names) != 1 or not set(options) <= {"-p"}:
        return _unknown(["restore", *args])
    try:
        image = json.loads(Path(names[0]).read_text())
    except (OSError, ValueError):
        image = None
    name = image.get(_IMAGE_KEY) if isinstance(image, dict) else None
    if name != GUEST or GUEST in state.domains:
        sys.stderr.write(f"xl stand-in: only an image of a stopped {GUEST!r} written by this stand-in restores\n")
        return 2
    state.domains[GUEST] = {"paused": "-p" in options}
    state.save()
    return 0


def _ip(state: _State, args: list[str]) -> int:
    """``ip -json -details link show`` or ``ip -json addr show``, as recorded on the lab (docstring)."""
    which = "net1" if GUEST in state.domains else "idle"
    if args == ["-json", "-details", "link", "show"]:
        sys.stdout.write(_read(f"ip_link_{which}.json"))
        return 0
    if args == ["-json", "addr", "show"]:
        sys.stdout.write(_read(f"ip_addr_{which}.json"))
        return 0
    sys.stderr.write(f"ip stand-in: no recorded output for ip {' '.join(args)}\n")
    return 2


def main(argv: list[str]) -> int:
    """Answer one ``xl`` call (or, after ``--as-ip``, one ``ip`` call) from the recordings; the exit status is
    the tool's (2: not recorded)."""
    directory = Path(os.environ["XL_STANDIN_STATE"])
    with (directory / "argv.jsonl").open("a") as log:
        log.write(json.dumps(argv) + "\n")
    state = _State(directory)
    if argv[:1] == ["--as-ip"]:
        return _ip(state, argv[1:])
    if not argv:
        return _unknown(argv)
    command, args = argv[0], argv[1:]
    if command == "info" and not args:
        sys.stdout.write(_read("info.txt"))
        return 0
    if command == "list":
        return _list(state, args)
    if command == "create":
        return _create(state, args)
    if command in ("pause", "unpause", "destroy"):
        return _change(state, command, args)
    if command == "save":
        return _save(state, args)
    if command == "restore":
        return _restore(state, args)
    return _unknown(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
