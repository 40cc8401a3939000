"""A simulated ``VBoxManage`` for the virtabs-vbox tests. TEST INFRASTRUCTURE, not VirtualBox.

VirtualBox cannot run on the CI machines (no package, no kernel module), so the driver is tested against
the executable ``VBoxManage`` next to this module, a launcher that imports it (so Python compiles it once and
reuses the cached bytecode instead of compiling a thousand lines at every call). It reproduces, for the subset of commands the driver uses, the documented output formats
(``showvminfo --machinereadable`` quoting and escapes, ``list vms``, ``list hdds`` blocks, ``snapshot list
--machinereadable`` tree keys), the error triplet on stderr (``VBoxManage: error: ...``, ``Details: code
VBOX_E_... (0x80bb....)``, ``Context: ...``) with exit status 1, and exit status 2 (RTEXITCODE_SYNTAX) for
an unknown command or option. See README.md next to this file for what is reproduced from documentation
and what is approximated.

State: a JSON file in ``$VBOX_USER_HOME`` (VirtualBox's own variable for its settings directory; required
here, so a test can never touch a real user's VirtualBox). Every invocation holds an exclusive lock on it.
There are no guest processes: a "running" VM is a state; ``boots`` in the state file counts the simulated
guest's boots (cold starts and resets; resuming a saved state is none), and ``ran_s``/``running_since`` its
run clock (stopped while paused or saved, continued when a saved state is resumed), what a test reads instead
of a guest console. A guest honours the ACPI power button by
powering off ``VBOXSIM_ACPI_DELAY`` seconds (default 0.3) later, observed by the next invocation.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

# Every VBoxManage call starts this module afresh: only what every command needs is imported here (uuid,
# datetime, shutil, contextlib and typing would cost a start-up each; see ``new_uuid``, ``now``, ``suppress``).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn


def _json_codec() -> tuple[Callable[[str], Any], Callable[[Any], str]]:
    """``json.loads`` and compact ``json.dumps`` from the C accelerator ``_json`` that ``json`` itself uses,
    without importing ``json`` (whose pure-Python parts import ``re``, ``enum``, ``functools`` and
    ``collections``: a third of this program's start-up). Falls back to ``json`` where ``_json`` is absent."""
    try:
        import _json  # type: ignore[import-not-found]
    except ImportError:
        import json

        return json.loads, lambda value: json.dumps(value, separators=(",", ":"))

    class Context:  # the attributes json.JSONDecoder hands to _json.make_scanner
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = None
        memo: dict[str, str] = {}  # noqa: RUF012

    scan = _json.make_scanner(Context())

    def loads(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration as exc:
            raise ValueError(f"{STATE_FILE}: no JSON value at offset {exc.value}") from None
        if text[end:].strip():
            raise ValueError(f"{STATE_FILE}: extra data at offset {end}")
        return value

    def no_default(value: Any) -> Any:
        raise TypeError(f"not JSON serializable: {type(value).__name__}")

    encode = _json.make_encoder({}, no_default, _json.encode_basestring_ascii, None, ":", ",", False, False, True)

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return loads, dumps


STATE_FILE = "vboxsim.json"
json_loads, json_dumps = _json_codec()

VERSION = "7.0.14r161095"
KMOD_WARNING = (
    "WARNING: The vboxdrv kernel module is not loaded. Either there is no module\n"
    "         available for the current kernel ({kernel}) or it failed to\n"
    "         load. Please recompile the kernel module and install it by\n\n"
    "           sudo /sbin/vboxconfig\n\n"
    "         You will not be able to start VMs until this problem is fixed.\n"
)


def is_uuid(key: str) -> bool:
    """``xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`` in hex (without importing ``re``: start-up cost)."""
    parts = key.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in "0123456789abcdefABCDEF" for c in "".join(parts))


MIB = 1 << 20

E_NOT_FOUND = ("VBOX_E_OBJECT_NOT_FOUND", "0x80bb0001")
E_INVALID_VM_STATE = ("VBOX_E_INVALID_VM_STATE", "0x80bb0002")
E_FILE_ERROR = ("VBOX_E_FILE_ERROR", "0x80bb0004")
E_INVALID_OBJECT_STATE = ("VBOX_E_INVALID_OBJECT_STATE", "0x80bb0007")
E_IPRT = ("VBOX_E_IPRT_ERROR", "0x80bb0005")
E_IN_USE = ("VBOX_E_OBJECT_IN_USE", "0x80bb000c")
E_INVALIDARG = ("E_INVALIDARG", "0x80070057")

FORMATS = {
    "VDI": b"<<< Oracle VM VirtualBox Disk Image >>>\n",
    "VMDK": b"KDMV",
    "VHD": b"conectix",
    "QCOW": b"QFI\xfb",
    "QED": b"QED\x00",
    "VHDX": b"vhdxfile",
    "RAW": b"",
}
EXTENSIONS = {
    "VDI": ".vdi",
    "VMDK": ".vmdk",
    "VHD": ".vhd",
    "QCOW": ".qcow",
    "QED": ".qed",
    "VHDX": ".vhdx",
    "RAW": ".img",
}
ACTIVE = (
    "running",
    "paused",
    "stuck",
    "teleporting",
    "teleportingpausedvm",
    "teleportingin",
    "livesnapshotting",
    "onlinesnapshotting",
    "deletingsnapshotlive",
    "deletingsnapshotlivepaused",
    "stopping",
    "saving",
    "starting",
    "restoring",
)
CONTROLLERS = {
    "ide": ("PIIX4", 2, 2),
    "sata": ("IntelAhci", 30, 1),
    "scsi": ("LsiLogic", 16, 1),
    "sas": ("LsiLogicSas", 255, 1),
    "virtio": ("VirtioSCSI", 255, 1),
    "nvme": ("NVMe", 255, 1),
}


class Exit(Exception):
    """Leave with this status after printing."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def out(text: str) -> None:
    sys.stdout.write(text)


def err(text: str) -> None:
    """Write to stderr. VirtualBox starts its error lines with the program name as invoked: ``VBOXSIM_PROGRAM``
    (``vboxmanage.exe`` prints as on Windows, see tests/real_outputs/error-windows-vboxmanage-rest-api.txt)."""
    program = os.environ.get("VBOXSIM_PROGRAM")
    if program:
        text = text.replace("VBoxManage: error:", f"{program}: error:")
    sys.stderr.write(text)


def fail(
    message: str,
    code: tuple[str, str],
    interface: str,
    context: str,
    line: int,
    file: str,
    component: str = "VirtualBoxWrap",
) -> NoReturn:
    """The real tool's three error lines and exit status 1."""
    for msg_line in message.split("\n"):
        err(f"VBoxManage: error: {msg_line}\n")
    err(
        f"VBoxManage: error: Details: code {code[0]} ({code[1]}), component {component}, "
        f"interface {interface}, callee nsISupports\n"
    )
    err(f'VBoxManage: error: Context: "{context}" at line {line} of file {file}\n')
    raise Exit(1)


def syntax(message: str) -> NoReturn:
    """A usage error: exit status 2 (RTEXITCODE_SYNTAX)."""
    err(f"VBoxManage: error: {message}\n")
    raise Exit(2)


def progress() -> None:
    err("0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%\n")


def now() -> str:
    """The current UTC time as VirtualBox prints a state change time (nanosecond digits)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}000"


def new_uuid() -> str:
    """A random (version 4) UUID, as ``new_uuid()`` gives."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class suppress:  # contextlib.suppress without importing contextlib
    """Ignore the given exceptions inside a ``with`` block."""

    def __init__(self, *exceptions: type[BaseException]) -> None:
        self.exceptions = exceptions

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, self.exceptions)


def q(value: str) -> str:
    """outputMachineReadableString: double quotes, with backslash and double quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mr_key(key: str) -> str:
    """A machine-readable key: bare when it is a plain identifier, else quoted like a value."""
    return key if key.replace("_", "a").isalnum() else q(key)


# --- state ----------------------------------------------------------------------------------------


class State:
    """The simulated VirtualBox installation: machines and the media registry, in one locked JSON file."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.path = os.path.join(home, STATE_FILE)
        os.makedirs(home, exist_ok=True)
        self._lock = open(os.path.join(home, "vboxsim.lock"), "a")  # noqa: SIM115
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            with open(self.path) as fh:
                self.data: dict[str, Any] = json_loads(fh.read())
        except FileNotFoundError:
            self.data = {"machines": [], "media": []}
        self.machine_folder = os.path.join(home, "VirtualBox VMs")
        self.dirty = self._advance()

    def unlock(self) -> None:
        """Let other invocations in (a ``startvm`` waiting for a teleport does, between its looks)."""
        fcntl.flock(self._lock, fcntl.LOCK_UN)

    def relock(self) -> None:
        """Lock again and read what other invocations changed meanwhile."""
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        with open(self.path) as fh:
            self.data = json_loads(fh.read())

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(json_dumps(self.data))
        os.replace(tmp, self.path)

    def _advance(self) -> bool:
        """Guests that got the ACPI power button have powered off by now (True when one did)."""
        changed = False
        delay = float(os.environ.get("VBOXSIM_ACPI_DELAY", "0.3"))
        for vm in self.data["machines"]:
            pressed = vm.get("acpi_pressed")
            if pressed is not None and vm["state"] == "running" and time.time() >= pressed + delay:
                set_state(vm, "poweroff")
                vm.pop("acpi_pressed", None)
                changed = True
        return changed

    # host networking
    def hostonly(self) -> list[dict[str, Any]]:
        """The host-only interfaces (``hostonlyif create`` adds them; none on a fresh install)."""
        return self.data.setdefault("hostonlyifs", [])

    def host_interfaces(self) -> list[dict[str, Any]]:
        """The simulated host's own network interfaces, what ``list bridgedifs`` shows: one ``eth0`` unless
        ``VBOXSIM_HOST_IFS`` names others (comma-separated). Simulated, not this machine's interfaces."""
        names = [n for n in os.environ.get("VBOXSIM_HOST_IFS", "eth0").split(",") if n]
        result = []
        for index, name in enumerate(names):
            mac = f"52:54:00:12:34:{0x56 + index:02x}"
            head = name.encode()[:4].ljust(4, b"\0")[::-1].hex()
            result.append(
                {
                    "name": name,
                    "guid": f"{head}-0000-4000-8000-{mac.replace(':', '')}",
                    "ip": f"192.0.2.{10 + index}",
                    "mask": "255.255.255.0",
                    "mac": mac,
                }
            )
        return result

    # lookups
    def machine(
        self,
        key: str,
        context: str = "FindMachine(Bstr(VMNameOrUuid).raw(), machine.asOutParam())",
        file: str = "VBoxManageInfo.cpp",
    ) -> dict[str, Any]:
        for vm in self.data["machines"]:
            if vm["uuid"] == key.lower() or vm["name"] == key:
                return vm
        # VirtualBox names the key as it was given: a UUID is "with UUID {...}", anything else "named '...'"
        what = f"with UUID {{{key}}}" if is_uuid(key) else f"named '{key}'"
        fail(f"Could not find a registered machine {what}", E_NOT_FOUND, "IVirtualBox", context, 2741, file)

    def medium(self, key: str, context: str) -> dict[str, Any]:
        for medium in self.data["media"]:
            if medium["uuid"] == key.lower() or medium["location"] == key:
                return medium
        if os.path.isabs(key) or "/" in key:
            fail(
                f"Could not find file for the medium '{os.path.abspath(key)}' (VERR_FILE_NOT_FOUND)",
                E_FILE_ERROR,
                "IMedium",
                context,
                201,
                "VBoxManageDisk.cpp",
                component="MediumWrap",
            )
        fail(
            f"Could not find an open hard disk with UUID {{{key}}}",
            E_NOT_FOUND,
            "IVirtualBox",
            context,
            201,
            "VBoxManageDisk.cpp",
            component="VirtualBoxWrap",
        )

    def open_medium(self, location: str, context: str) -> dict[str, Any]:
        """A registered medium, or the image at ``location`` registered now (format detected by magic)."""
        for medium in self.data["media"]:
            if medium["uuid"] == location.lower() or medium["location"] == location:
                return medium
        path = os.path.abspath(location)
        if not os.path.exists(path):
            fail(
                f"Could not find file for the medium '{path}' (VERR_FILE_NOT_FOUND)",
                E_FILE_ERROR,
                "IMedium",
                context,
                201,
                "VBoxManageStorageController.cpp",
                component="MediumWrap",
            )
        with open(path, "rb") as fh:
            head = fh.read(64)
        for fmt, magic in FORMATS.items():
            if magic and head.startswith(magic):
                medium = {
                    "uuid": new_uuid(),
                    "location": path,
                    "format": fmt,
                    "capacity": os.path.getsize(path),
                    "parent": None,
                    "variant": "dynamic default",
                }
                self.data["media"].append(medium)
                return medium
        fail(
            f"Could not get the storage format of the medium '{path}' (VERR_NOT_SUPPORTED)",
            E_IPRT,
            "IMedium",
            context,
            201,
            "VBoxManageStorageController.cpp",
            component="MediumWrap",
        )

    def users_of(self, medium: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            vm
            for vm in self.data["machines"]
            if any(a.get("medium") == medium["uuid"] for a in vm["attachments"].values())
        ]


def in_use(users: list[dict[str, Any]]) -> str:
    if not users:
        return ""
    return "In use by VMs:  " + ", ".join(f"{u['name']} (UUID: {u['uuid']})" for u in users) + "\n"


def set_state(vm: dict[str, Any], state: str) -> None:
    # The simulated guest's run clock: it advances while running, stops while paused or saved (a saved
    # state resumes where it stopped) and is gone at power off; a cold boot or reset starts it at zero.
    t = time.time()
    if vm.get("running_since") is not None:
        vm["ran_s"] = vm.get("ran_s", 0.0) + t - vm["running_since"]
    vm["running_since"] = t if state == "running" else None
    if state in ("poweroff", "aborted"):
        vm["ran_s"] = 0.0
    vm["state"] = state
    vm["state_time"] = now()


def locked(vm: dict[str, Any], context: str, file: str) -> NoReturn:
    fail(
        f"The machine '{vm['name']}' is already locked for a session (or being unlocked)",
        E_INVALID_OBJECT_STATE,
        "IMachine",
        context,
        3034,
        file,
        component="MachineWrap",
    )


def not_running(vm: dict[str, Any]) -> NoReturn:
    err(f"VBoxManage: error: Machine '{vm['name']}' is not currently running\n")
    raise Exit(1)


# --- argument parsing -----------------------------------------------------------------------------


def parse_opts(
    args: list[str],
    valued: set[str],
    flags: set[str] = frozenset(),
    positional: int = 0,
    aliases: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """``--opt value`` / ``--opt=value`` options and up to ``positional`` positional arguments.

    As IPRT's ``RTGetOpt`` (src/VBox/Runtime/common/misc/getopt.cpp), which every VBoxManage command
    uses: an argument starting with ``-`` that names no option is an error, a valued option takes the
    next argument as its value whatever it looks like, and ``--`` makes every later argument a
    non-option (a machine called ``--details`` is reached as ``showvminfo --machinereadable -- --details``).
    """
    aliases = aliases or {}
    pos: list[str] = []
    opts: dict[str, str] = {}
    i = 0
    dash_dash = False
    while i < len(args):
        arg = args[i]
        if arg == "--" and not dash_dash:
            dash_dash = True
        elif arg.startswith("-") and len(arg) > 1 and not dash_dash:
            name, eq, value = arg.partition("=")
            name = aliases.get(name, name)
            if name in flags and not eq:
                opts[name] = "1"
            elif name in valued:
                if not eq:
                    i += 1
                    if i >= len(args):
                        syntax(f"Missing value for option {name}")
                    value = args[i]
                opts[name] = value
            else:
                syntax(f"Unknown option: {arg}")
        else:
            if len(pos) >= positional:
                syntax(f"Invalid parameter '{arg}'")
            pos.append(arg)
        i += 1
    return pos, opts


def parse_size(opts: dict[str, str], mb_key: str, byte_key: str) -> int | None:
    try:
        if byte_key in opts:
            return int(opts[byte_key])
        if mb_key in opts:
            return int(opts[mb_key]) * MIB
    except ValueError:
        syntax("Invalid size argument")
    return None


# --- commands -------------------------------------------------------------------------------------


def cmd_list(st: State, args: list[str]) -> None:
    pos, opts = parse_opts(args, set(), {"--long", "-l", "--sorted", "-s"}, positional=1)
    if not pos:
        syntax("Missing subcommand for 'list'")
    what = pos[0]
    machines = st.data["machines"]
    if what == "vms":
        for vm in machines:
            out(f'"{vm["name"]}" {{{vm["uuid"]}}}\n')
    elif what == "runningvms":
        for vm in machines:
            if vm["state"] in ACTIVE:
                out(f'"{vm["name"]}" {{{vm["uuid"]}}}\n')
    elif what == "hdds":
        blocks = [medium_block(st, m, detailed=False) for m in st.data["media"]]
        out("\n".join(blocks) + ("\n" if blocks else ""))
    elif what == "hostonlyifs":
        out("".join(interface_block(i) for i in st.hostonly()))
    elif what == "bridgedifs":
        out("".join(interface_block(i) for i in st.host_interfaces()))
    elif what == "intnets":
        # IVirtualBox::InternalNetworks: the names the machines' adapters use, once each (VBoxManageList.cpp)
        names: list[str] = []
        for vm in machines:
            for n in sorted(vm["nics"], key=int):
                nic = vm["nics"][n]
                if nic["type"] == "intnet" and nic.get("target", "intnet") not in names:
                    names.append(nic.get("target", "intnet"))
        out("".join(f"Name:        {name}\n" for name in names))
    elif what in ("natnets", "natnetworks"):
        nets = st.data.get("natnets", [])
        if "--sorted" in opts or "-s" in opts:
            nets = sorted(nets, key=lambda net: net["name"])
        out("".join(natnet_block(net, "--long" in opts or "-l" in opts) for net in nets))
    elif what == "dhcpservers":
        out("\n".join(dhcp_block(d) for d in st.data.get("dhcpservers", [])))
    elif what == "hostonlynets" and vmnet():
        out("".join(hostonlynet_block(n) for n in st.data.get("hostonlynets", [])))
    elif what == "systemproperties":
        out(
            "API version:                     7_0\n"
            "Minimum guest RAM size:          4 Megabytes\n"
            "Maximum guest RAM size:          2097152 Megabytes\n"
            "Minimum video RAM size:          0 Megabytes\n"
            "Maximum guest CPU count:         64\n"
            f"Default machine folder:          {st.machine_folder}\n"
            "Default hard disk format:        VDI\n"
        )
    elif what == "hostinfo":
        mem = 0
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) // 1024
        cpus = os.cpu_count() or 1
        out(
            "Host Information:\n\n"
            f"Host time: {now()[:23]}Z\n"
            f"Processor online count: {cpus}\nProcessor count: {cpus}\n"
            f"Processor online core count: {cpus}\nProcessor core count: {cpus}\n"
            "Processor supports HW virtualization: yes\nProcessor supports PAE: yes\n"
            "Processor supports long mode: yes\nProcessor supports nested HW virtualization: yes\n"
            "Processor#0 speed: 2000 MHz\nProcessor#0 description: Simulated CPU (vboxmanage_sim)\n"
            f"Memory size: {mem} MByte\nMemory available: {mem // 2} MByte\n"
            f"Operating system: Linux\nOperating system version: {os.uname().release}\n"
        )
    else:
        syntax(f"Unknown subcommand '{what}' for 'list'")


def interface_block(i: dict[str, Any]) -> str:
    """One ``list hostonlyifs`` / ``list bridgedifs`` block, as listNetworkInterfaces prints it on a host with
    VBOX_WITH_HOSTNETIF_API (Linux, macOS, Windows): VBoxManageList.cpp; compare the real blocks in
    tests/real_outputs/list-hostonlyifs-6.0-linux-ohai.txt."""
    return (
        f"Name:            {i['name']}\n"
        f"GUID:            {i['guid']}\n"
        f"DHCP:            {'Enabled' if i.get('dhcp') else 'Disabled'}\n"
        f"IPAddress:       {i.get('ip', '0.0.0.0')}\n"
        f"NetworkMask:     {i.get('mask', '0.0.0.0')}\n"
        f"IPV6Address:     {i.get('ip6', '')}\n"
        f"IPV6NetworkMaskPrefixLength: {i.get('ip6len', 0)}\n"
        f"HardwareAddress: {i['mac']}\n"
        "MediumType:      Ethernet\n"
        "Wireless:        No\n"
        f"Status:          {i.get('status', 'Up')}\n"
        f"VBoxNetworkName: HostInterfaceNetworking-{i['name']}\n\n"
    )


def natnet_block(net: dict[str, Any], long: bool) -> str:
    """One NAT network as VirtualBox 7.0 prints it for ``list [--long] natnets`` (listNATNetworks calls
    printNATNetwork of VBoxManageNATNetwork.cpp: ``Enabled:`` and the port-forwarding/loopback lists only with
    ``--long``). 6.x printed other keys (``NetworkName:``, ``IP:``, ``DHCP Enabled:``), as in the real capture
    tests/real_outputs/list-natnets-6.0-linux-ohai.txt."""
    text = f"Name:         {net['name']}\n"
    if long:
        text += f"Enabled:      {'Yes' if net.get('enabled', True) else 'No'}\n"
    text += (
        f"Network:      {net['network']}\n"
        f"Gateway:      {net['gateway']}\n"
        f"DHCP Server:  {'Yes' if net.get('dhcp', True) else 'No'}\n"
        f"IPv6:         {'Yes' if net.get('ipv6') else 'No'}\n"
        f"IPv6 Prefix:  {net.get('prefix6', 'fd17:625c:f037:2::/64')}\n"
        "IPv6 Default: No\n"
    )
    if long:
        text += "loopback mappings (ipv4)\n        127.0.0.1=2\n"
    return text + "\n"


def machine_readable(st: State, vm: dict[str, Any]) -> str:
    """``showvminfo --machinereadable`` in VirtualBox 7.0's key order (VBoxManageInfo.cpp; compare the real
    7.0 capture in tests/real_outputs/showvminfo-7.0-linux-vedv.txt), for the keys the simulator models."""
    folder = os.path.dirname(vm["cfgfile"])
    lines = [
        f"name={q(vm['name'])}",
        "Encryption:     disabled",  # 7.0 prints this line (not key=value) right after the name
        'groups="/"',
        f"ostype={q(vm['ostype'])}",
        f"UUID={q(vm['uuid'])}",
        f"CfgFile={q(vm['cfgfile'])}",
        f"SnapFldr={q(os.path.join(folder, 'Snapshots'))}",
        f"LogFldr={q(os.path.join(folder, 'Logs'))}",
        f"hardwareuuid={q(vm['uuid'])}",
        f"memory={vm['memory']}",
        'pagefusion="off"',
        "vram=16",
        "cpuexecutioncap=100",
        'hpet="off"',
        'cpu-profile="host"',
        'chipset="piix3"',
        'firmware="BIOS"',
        f"cpus={vm['cpus']}",
        f"VMState={q(vm['state'])}",
        f"VMStateChangeTime={q(vm['state_time'])}",
    ]
    if vm.get("statefile"):
        lines.append(f"VMStateFile={q(vm['statefile'])}")
    # VBoxManageInfo.cpp: these four after the state lines (the real 4.1, 6.0 and 7.0 captures have them there)
    lines += [
        f'teleporterenabled="{"on" if vm.get("teleporter") else "off"}"',
        f"teleporterport={vm.get('teleporter_port', 0)}",
        f"teleporteraddress={q(vm.get('teleporter_address', ''))}",
        f"teleporterpassword={q(vm.get('teleporter_password', ''))}",
    ]
    for n, ctl in enumerate(vm["controllers"]):
        lines += [
            f"storagecontrollername{n}={q(ctl['name'])}",
            f"storagecontrollertype{n}={q(ctl['type'])}",
            f'storagecontrollerinstance{n}="0"',
            f"storagecontrollermaxportcount{n}={q(str(CONTROLLER_MAX[ctl['type']]))}",
            f"storagecontrollerportcount{n}={q(str(ctl['ports']))}",
            f'storagecontrollerbootable{n}="on"',
        ]
    for ctl in vm["controllers"]:
        devices = 2 if ctl["type"] == "PIIX4" else 1
        # VBoxManageInfo.cpp prints hot-pluggable only for controllers named SATA or USB (by name, not type)
        hotplug_line = ctl["name"].lower() in ("sata", "usb")
        for port in range(ctl["ports"]):
            for device in range(devices):
                att = vm["attachments"].get(f"{ctl['name']}-{port}-{device}")
                slot = f"{port}-{device}"
                key = f"{ctl['name']}-{slot}"
                if att is None:
                    lines.append(f'{q(key)}="none"')
                elif att.get("medium") is None:
                    lines.append(f'{q(key)}="emptydrive"')
                    if att.get("type") == "dvddrive":
                        lines.append(f'{q(ctl["name"] + "-IsEjected-" + slot)}="off"')
                else:
                    medium = st.medium(att["medium"], "showvminfo")
                    lines.append(f"{q(key)}={q(medium['location'])}")
                    lines.append(f"{q(ctl['name'] + '-ImageUUID-' + slot)}={q(medium['uuid'])}")
                    if hotplug_line:
                        flag = "on" if att.get("hotpluggable") else "off"
                        lines.append(f'{q(ctl["name"] + "-hot-pluggable-" + slot)}="{flag}"')
                    lines.append(f'{q(ctl["name"] + "-nonrotational-" + slot)}="off"')
                    lines.append(f'{q(ctl["name"] + "-discard-" + slot)}="off"')
    for n in range(1, 9):
        nic = vm["nics"].get(str(n))
        if nic is None:
            lines.append(f'nic{n}="none"')
        else:
            # 7.0's order: the attachment's own key, macaddress, cableconnected, nic, nictype, nicspeed
            if nic["type"] == "nat":
                lines.append(f'natnet{n}="nat"')
            elif nic["type"] == "bridged":
                lines.append(f"bridgeadapter{n}={q(nic.get('target', ''))}")
            elif nic["type"] == "intnet":
                lines.append(f"intnet{n}={q(nic.get('target', ''))}")
            elif nic["type"] == "hostonly":
                lines.append(f"hostonlyadapter{n}={q(nic.get('target', ''))}")
            elif nic["type"] == "hostonlynetwork":
                # VBoxManageInfo.cpp (VBOX_WITH_VMNET): "%ls" between quotes, not escaped
                lines.append(f'hostonly-network{n}="{nic.get("target", "")}"')
            elif nic["type"] == "natnetwork":
                # VBoxManageInfo.cpp prints this one with "%ls" between quotes, not escaped
                lines.append(f'nat-network{n}="{nic.get("target", "")}"')
            lines.append(f"macaddress{n}={q(nic['mac'])}")
            lines.append(f'cableconnected{n}="on"')
            lines.append(f"nic{n}={q(nic['type'])}")
            lines.append(f"nictype{n}={q(nic.get('model', '82540EM'))}")
            lines.append(f'nicspeed{n}="0"')
    lines.append(f"description={q(vm.get('description', ''))}")
    if vm["snapshots"]:
        lines += snapshot_lines(vm)
    return "\n".join(lines) + "\n"


CONTROLLER_MAX = {t: m for t, m, _ in CONTROLLERS.values()}


def snapshot_nodes(vm: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(suffix, snapshot) in tree order: "" for the root, "-1", "-1-1", ... for children."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    for snap in vm["snapshots"]:
        by_parent.setdefault(snap["parent"], []).append(snap)
    result: list[tuple[str, dict[str, Any]]] = []

    def walk(snap: dict[str, Any], suffix: str) -> None:
        result.append((suffix, snap))
        for i, child in enumerate(by_parent.get(snap["uuid"], []), 1):
            walk(child, f"{suffix}-{i}")

    for root in by_parent.get(None, []):
        walk(root, "")
    return result


def snapshot_lines(vm: dict[str, Any]) -> list[str]:
    lines = []
    current_node = ""
    for suffix, snap in snapshot_nodes(vm):
        lines.append(f"SnapshotName{suffix}={q(snap['name'])}")
        lines.append(f"SnapshotUUID{suffix}={q(snap['uuid'])}")
        if snap.get("description"):
            lines.append(f"SnapshotDescription{suffix}={q(snap['description'])}")
        if snap["uuid"] == vm.get("current_snapshot"):
            current_node = f"SnapshotName{suffix}"
    current = next((s for s in vm["snapshots"] if s["uuid"] == vm.get("current_snapshot")), None)
    if current is not None:
        lines.append(f"CurrentSnapshotName={q(current['name'])}")
        lines.append(f"CurrentSnapshotUUID={q(current['uuid'])}")
        lines.append(f"CurrentSnapshotNode={q(current_node)}")
    return lines


def cmd_showvminfo(st: State, args: list[str]) -> None:
    pos, opts = parse_opts(args, {"--log"}, {"--machinereadable", "--details"}, positional=1)
    if not pos:
        syntax("Missing VM name/UUID for 'showvminfo'")
    vm = st.machine(pos[0])
    if "--machinereadable" not in opts:
        err("VBoxManage: error: vboxmanage_sim: only --machinereadable output is simulated\n")
        raise Exit(1)
    out(machine_readable(st, vm))


def cmd_createvm(st: State, args: list[str]) -> None:
    _, opts = parse_opts(
        args, {"--name", "--ostype", "--basefolder", "--uuid", "--groups", "--default"}, {"--register"}
    )
    name = opts.get("--name")
    if not name:
        syntax("Parameter --name is required")
    base = opts.get("--basefolder", st.machine_folder)
    cfg = os.path.join(base, name, name + ".vbox")
    if os.path.exists(cfg) or any(vm["cfgfile"] == cfg for vm in st.data["machines"]):
        fail(
            f"Machine settings file '{cfg}' already exists",
            E_FILE_ERROR,
            "IVirtualBox",
            "CreateMachine(bstrSettingsFile.raw(), bstrName.raw(), ...)",
            289,
            "VBoxManageMisc.cpp",
        )
    vm_uuid = (opts.get("--uuid") or new_uuid()).lower()
    if any(vm["uuid"] == vm_uuid for vm in st.data["machines"]):
        fail(
            f"A machine with UUID {{{vm_uuid}}} is already registered",
            E_INVALID_OBJECT_STATE,
            "IVirtualBox",
            "RegisterMachine(machine)",
            297,
            "VBoxManageMisc.cpp",
        )
    vm = {
        "uuid": vm_uuid,
        "name": name,
        "ostype": opts.get("--ostype", "Other"),
        "cfgfile": cfg,
        "memory": 128,
        "cpus": 1,
        "state": "poweroff",
        "state_time": now(),
        "controllers": [],
        "attachments": {},
        "nics": {},
        "snapshots": [],
        "current_snapshot": None,
        "description": "",
    }
    os.makedirs(os.path.dirname(cfg), exist_ok=True)
    with open(cfg, "w") as fh:
        fh.write(f'<?xml version="1.0"?>\n<!-- vboxmanage_sim machine {vm_uuid} -->\n')
    if "--register" in opts:
        st.data["machines"].append(vm)
        out(f"Virtual machine '{name}' is created and registered.\n")
    else:
        out(f"Virtual machine '{name}' is created.\n")
    out(f"UUID: {vm_uuid}\nSettings file: '{cfg}'\n")


def require_unlocked(vm: dict[str, Any], context: str, file: str) -> None:
    if vm["state"] in ACTIVE:
        locked(vm, context, file)


def cmd_modifyvm(st: State, args: list[str]) -> None:
    valued = {"--memory", "--cpus", "--ostype", "--description", "--name"}
    valued |= {f"--nic{n}" for n in range(1, 9)} | {f"--macaddress{n}" for n in range(1, 9)}
    valued |= {f"--nictype{n}" for n in range(1, 9)} | {f"--bridgeadapter{n}" for n in range(1, 9)}
    valued |= {f"--intnet{n}" for n in range(1, 9)} | {f"--hostonlyadapter{n}" for n in range(1, 9)}
    valued |= {f"--nat-network{n}" for n in range(1, 9)} | {f"--host-only-net{n}" for n in range(1, 9)}
    valued |= {"--teleporter", "--teleporter-port", "--teleporter-address", "--teleporter-password"}
    valued |= {"--teleporter-password-file"}
    pos, opts = parse_opts(args, valued, positional=1, aliases=TELEPORTER_ALIASES)
    if not pos:
        syntax("Missing VM name/UUID for 'modifyvm'")
    vm = st.machine(pos[0], "FindMachine", "VBoxManageModifyVM.cpp")
    require_unlocked(vm, "LockMachine(a->session, LockType_Write)", "VBoxManageModifyVM.cpp")
    for key, value in opts.items():
        if key.startswith("--teleporter"):
            set_teleporter(vm, key, value)
        if key in ("--memory", "--cpus"):
            try:
                number = int(value)
            except ValueError:
                syntax(f"Invalid {key} value '{value}'")
            if number < 1 or (key == "--cpus" and number > 64) or (key == "--memory" and number < 4):
                fail(
                    f"Invalid {key[2:]} count/size: {number}",
                    E_INVALIDARG,
                    "IMachine",
                    f"COMSETTER({key[2:].capitalize()})({number})",
                    700,
                    "VBoxManageModifyVM.cpp",
                    component="MachineWrap",
                )
            vm[key[2:]] = number
        elif key == "--ostype":
            vm["ostype"] = value
        elif key == "--description":
            vm["description"] = value
        elif key == "--name":
            vm["name"] = value
        elif key.startswith("--nic") and not key.startswith("--nictype"):
            n = key[5:]
            if value == "none":
                vm["nics"].pop(n, None)
            elif value in ("nat", "bridged", "intnet", "hostonly", "natnetwork", "null", "generic") or (
                value == "hostonlynet" and vmnet()
            ):
                nic = vm["nics"].setdefault(n, {"mac": random_mac()})
                nic["type"] = "hostonlynetwork" if value == "hostonlynet" else value
            else:
                syntax(f"Invalid type '{value}' specfied for NIC {n}")
    for key, value in opts.items():
        for prefix, field in (
            ("--macaddress", "mac"),
            ("--nictype", "model"),
            ("--bridgeadapter", "target"),
            ("--intnet", "target"),
            ("--hostonlyadapter", "target"),
            ("--nat-network", "target"),
            ("--host-only-net", "target"),
        ):
            if key.startswith(prefix):
                nic = vm["nics"].get(key[len(prefix) :])
                if nic is None:
                    continue
                if field == "mac":
                    value = random_mac() if value == "auto" else value.upper()
                    if len(value) != 12 or any(c not in "0123456789ABCDEF" for c in value):
                        syntax(f"Invalid MAC address '{value}'")
                nic[field] = value


TELEPORTER_ALIASES = {
    "--teleporterenabled": "--teleporter",
    "--teleporter-enabled": "--teleporter",
    "--teleporterport": "--teleporter-port",
    "--teleporteraddress": "--teleporter-address",
    "--teleporterpassword": "--teleporter-password",
    "--teleporterpasswordfile": "--teleporter-password-file",
}
"""VBoxManageModifyVM.cpp's OPT2 pairs: 7.0's dashed names and the older ones, both accepted."""


def read_password_file(name: str) -> str:
    """VBoxManage's readPasswordFile: the file named (``stdin``: standard input) up to its first control
    character, at most 511 bytes."""
    try:
        if name == "stdin":
            text = sys.stdin.read(512)
        else:
            with open(name) as fh:
                text = fh.read(512)
    except OSError as exc:
        err(f"VBoxManage: error: Cannot open password file '{name}' ({exc.strerror})\n")  # approximated wording
        raise Exit(1) from None
    if len(text) >= 512:
        err(f"VBoxManage: error: Provided password in file '{name}' is too long\n")
        raise Exit(1)
    end = next((i for i, c in enumerate(text) if ord(c) < 32 or ord(c) == 127), len(text))
    return text[:end]


def hash_password(password: str) -> str:
    """How the simulator keeps a teleporter password: its SHA-512 in hex (VirtualBox keeps a hash too,
    VBoxHashPassword; its exact form is not reproduced)."""
    if not password:
        return ""
    import hashlib  # only here: start-up cost

    return hashlib.sha512(password.encode()).hexdigest()


def set_teleporter(vm: dict[str, Any], key: str, value: str) -> None:
    """``modifyvm --teleporter on|off``, ``--teleporter-port``, ``--teleporter-address``,
    ``--teleporter-password``, ``--teleporter-password-file`` (IMachine's Teleporter* attributes)."""
    if key == "--teleporter":
        if value not in ("on", "off"):
            syntax(f"Invalid --teleporter argument '{value}'")
        vm["teleporter"] = value == "on"
    elif key == "--teleporter-port":
        if not value.isdigit() or int(value) > 65535:
            syntax(f"Invalid --teleporter-port value '{value}'")
        vm["teleporter_port"] = int(value)
    elif key == "--teleporter-address":
        vm["teleporter_address"] = value
    elif key == "--teleporter-password":
        vm["teleporter_password"] = hash_password(value)
    elif key == "--teleporter-password-file":
        vm["teleporter_password"] = hash_password(read_password_file(value))


def cmd_hostonlyif(st: State, args: list[str]) -> None:
    """``hostonlyif create | ipconfig <name> --ip A --netmask M | remove <name>`` (VBoxManageHostonly.cpp)."""
    if not args:
        syntax("Missing subcommand for 'hostonlyif'")
    action, rest = args[0], args[1:]
    ifs = st.hostonly()
    if action == "create":
        parse_opts(rest, set())
        n = 0
        while any(i["name"] == f"vboxnet{n}" for i in ifs):
            n += 1
        ifs.append(
            {
                "name": f"vboxnet{n}",
                # VirtualBox on Linux derives the GUID from the name and the MAC (compare the real capture)
                "guid": f"786f6276-656e-4{n % 10}74-8000-0a00270000{n:02x}",
                "ip": f"192.168.{56 + n}.1",
                "mask": "255.255.255.0",
                "ip6": "",
                "ip6len": 0,
                "mac": f"0a:00:27:00:00:{n:02x}",
                "status": "Up",
            }
        )
        progress()
        out(f"Interface 'vboxnet{n}' was successfully created\n")
        return
    if action not in ("ipconfig", "remove"):
        syntax(f"Invalid parameter '{action}'")
    pos, opts = parse_opts(rest, {"--ip", "--netmask"}, {"--dhcp"}, positional=1)
    if not pos:
        syntax(f"Missing host-only interface name for '{action}'")
    found = [i for i in ifs if i["name"] == pos[0]]
    if not found:
        fail(
            f"The host network interface named '{pos[0]}' could not be found",
            E_INVALIDARG,
            "IHost",
            "FindHostNetworkInterfaceByName(name.raw(), hif.asOutParam())",
            251,
            "VBoxManageHostonly.cpp",
            component="HostWrap",
        )
    if action == "remove":
        ifs.remove(found[0])
        progress()
        return
    if "--ip" in opts:
        found[0]["ip"] = opts["--ip"]
        found[0]["mask"] = opts.get("--netmask", "255.255.255.0")
    found[0]["dhcp"] = "--dhcp" in opts


def vmnet() -> bool:
    """Whether the simulated host has VirtualBox 7's host-only networks (VBOX_WITH_VMNET: macOS hosts only;
    ``VBOXSIM_VMNET=1``). Without it ``list hostonlynets`` and ``hostonlynet`` are unknown, as on Linux."""
    return os.environ.get("VBOXSIM_VMNET") == "1"


def dhcp_block(d: dict[str, Any]) -> str:
    """One server as 6.1+'s ``list dhcpservers`` prints it (VBoxManageList.cpp listDhcpServers: the keys, their
    order and padding; servers separated by one blank line). The global configuration lines are the defaults
    the real capture tests/real_outputs/list-dhcpservers-7.x-linux-notes.txt shows (options are not simulated)."""
    return (
        f"NetworkName:    {d['network']}\n"
        f"Dhcpd IP:       {d['ip']}\n"
        f"LowerIPAddress: {d['lower']}\n"
        f"UpperIPAddress: {d['upper']}\n"
        f"NetworkMask:    {d['netmask']}\n"
        f"Enabled:        {'Yes' if d['enabled'] else 'No'}\n"
        "Global Configuration:\n"
        "    minLeaseTime:     default\n"
        "    defaultLeaseTime: default\n"
        "    maxLeaseTime:     default\n"
        "    Forced options:   None\n"
        "    Suppressed opts.: None\n"
        f"        1/legacy: {d['netmask']}\n"
        "Groups:               None\n"
        "Individual Configs:   None\n"
    )


def hostonlynet_block(n: dict[str, Any]) -> str:
    """One network as ``list hostonlynets`` prints it (VBoxManageList.cpp listHostOnlyNetworks, with its blank
    line after ``GUID``)."""
    return (
        f"Name:            {n['name']}\n"
        f"GUID:            {n['guid']}\n\n"
        f"State:           {'Enabled' if n['enabled'] else 'Disabled'}\n"
        f"NetworkMask:     {n['netmask']}\n"
        f"LowerIP:         {n['lower']}\n"
        f"UpperIP:         {n['upper']}\n"
        f"VBoxNetworkName: hostonly-{n['name']}\n\n"
    )


def cmd_dhcpserver(st: State, args: list[str]) -> None:
    """``dhcpserver add|modify|remove`` with ``--network``/``--netname`` or ``--interface``/``--ifname`` (a
    host-only interface's server is ``HostInterfaceNetworking-<ifname>``), ``--server-ip``/``--ip``,
    ``--netmask``, ``--lower-ip``/``--lowerip``, ``--upper-ip``/``--upperip``, ``--enable``/``--disable``
    (VBoxManageDHCPServer.cpp's option names; error texts approximated)."""
    if not args:
        syntax("Not enough parameters")
    action, rest = args[0], args[1:]
    if action not in ("add", "modify", "remove"):
        syntax(f"Invalid parameter '{action}'")
    aliases = {"--netname": "--network", "--ifname": "--interface", "--ip": "--server-ip", "--lowerip": "--lower-ip"}
    aliases |= {"--upperip": "--upper-ip", "--mask": "--netmask"}
    _, opts = parse_opts(
        rest,
        {"--network", "--interface", "--server-ip", "--netmask", "--lower-ip", "--upper-ip"},
        {"--enable", "--disable"},
        aliases=aliases,
    )
    if "--interface" in opts:
        network = f"HostInterfaceNetworking-{opts['--interface']}"
    elif "--network" in opts:
        network = opts["--network"]
    else:
        syntax("You need to specify either --network or --interface to identify the DHCP server")
    servers = st.data.setdefault("dhcpservers", [])
    found = next((d for d in servers if d["network"] == network), None)
    if action == "add" and found is not None:
        fail(
            f"DHCP server already exists for network '{network}'",
            E_INVALIDARG,
            "IVirtualBox",
            "CreateDHCPServer",
            400,
            "VBoxManageDHCPServer.cpp",
        )
    if action != "add" and found is None:
        fail(
            f"DHCP server does not exist for network '{network}'",
            E_INVALIDARG,
            "IVirtualBox",
            "FindDHCPServerByNetworkName",
            400,
            "VBoxManageDHCPServer.cpp",
        )
    if action == "remove":
        servers.remove(found)
        return
    server = found or {"network": network, "enabled": False, "ip": "", "netmask": "", "lower": "", "upper": ""}
    for key, field in (
        ("--server-ip", "ip"),
        ("--netmask", "netmask"),
        ("--lower-ip", "lower"),
        ("--upper-ip", "upper"),
    ):
        if key in opts:
            server[field] = opts[key]
    if "--enable" in opts or "--disable" in opts:
        server["enabled"] = "--enable" in opts
    if found is None:
        servers.append(server)


def cmd_hostonlynet(st: State, args: list[str]) -> None:
    """``hostonlynet add|modify|remove --name N [--netmask M --lower-ip L --upper-ip U] [--enable|--disable]``
    (VirtualBox 7 on macOS; ``VBOXSIM_VMNET=1``)."""
    if not vmnet():
        syntax("Invalid command 'hostonlynet'")
    if not args:
        syntax("Not enough parameters")
    action, rest = args[0], args[1:]
    if action not in ("add", "modify", "remove"):
        syntax(f"Invalid parameter '{action}'")
    _, opts = parse_opts(
        rest,
        {"--name", "--netmask", "--lower-ip", "--upper-ip", "--id"},
        {"--enable", "--disable"},
        aliases={"--lowerip": "--lower-ip", "--upperip": "--upper-ip"},
    )
    name = opts.get("--name")
    if not name:
        syntax("You need to specify the --name option")
    nets = st.data.setdefault("hostonlynets", [])
    found = next((n for n in nets if n["name"] == name), None)
    if (action == "add") == (found is not None):
        syntax(f"Host-only network '{name}' {'already exists' if found else 'does not exist'}")
    if action == "remove":
        nets.remove(found)
        return
    net = found or {"name": name, "guid": new_uuid(), "enabled": True, "netmask": "", "lower": "", "upper": ""}
    for key, field in (("--netmask", "netmask"), ("--lower-ip", "lower"), ("--upper-ip", "upper")):
        if key in opts:
            net[field] = opts[key]
    if "--enable" in opts or "--disable" in opts:
        net["enabled"] = "--enable" in opts
    if found is None:
        nets.append(net)


def cmd_natnetwork(st: State, args: list[str]) -> None:
    """``natnetwork add --netname N --network CIDR [--enable|--disable] [--dhcp on|off] | remove --netname N``
    (VBoxManageNATNetwork.cpp; the gateway is the network's first address)."""
    if not args:
        syntax("Not enough parameters")
    action, rest = args[0], args[1:]
    if action not in ("add", "remove", "modify"):
        syntax(f"Invalid parameter '{action}'")
    _, opts = parse_opts(rest, {"--netname", "-t", "--network", "-n", "--dhcp", "-h"}, {"--enable", "--disable"})
    name = opts.get("--netname", opts.get("-t"))
    if not name:
        syntax("You need to specify the --netname option")
    nets = st.data.setdefault("natnets", [])
    found = [net for net in nets if net["name"] == name]
    if action == "add" and found:
        syntax("NATNetwork server already exists")
    if action != "add" and not found:
        syntax("NATNetwork server does not exist")
    if action == "remove":
        nets.remove(found[0])
        return
    net = found[0] if found else {"name": name, "enabled": True, "dhcp": True}
    network = opts.get("--network", opts.get("-n"))
    if action == "add" and not network:
        syntax("You need to specify the --network option")
    if network:
        address, _, bits = network.partition("/")
        parts = address.split(".")
        if len(parts) != 4 or not bits.isdigit() or not all(p.isdigit() and int(p) < 256 for p in parts):
            fail(
                f"Invalid IPv4 prefix '{network}'",
                E_INVALIDARG,
                "INATNetwork",
                "COMSETTER(Network)(Bstr(pPrefixIPv4).raw())",
                385,
                "VBoxManageNATNetwork.cpp",
                component="NATNetworkWrap",
            )
        net["network"] = network
        net["gateway"] = ".".join([*parts[:3], str(int(parts[3]) + 1)])
    if "--enable" in opts or "--disable" in opts:
        net["enabled"] = "--enable" in opts
    dhcp = opts.get("--dhcp", opts.get("-h"))
    if dhcp is not None:
        net["dhcp"] = dhcp in ("on", "1", "true", "yes")
    if not found:
        nets.append(net)


def random_mac() -> str:
    return "080027" + os.urandom(3).hex().upper()


def cmd_storagectl(st: State, args: list[str]) -> None:
    pos, opts = parse_opts(
        args,
        {"--name", "--add", "--controller", "--portcount", "--bootable", "--hostiocache"},
        {"--remove"},
        positional=1,
    )
    if not pos or "--name" not in opts:
        syntax("Missing VM name/UUID or --name for 'storagectl'")
    vm = st.machine(pos[0], "FindMachine", "VBoxManageStorageController.cpp")
    require_unlocked(vm, "LockMachine(a->session, LockType_Write)", "VBoxManageStorageController.cpp")
    name = opts["--name"]
    existing = next((c for c in vm["controllers"] if c["name"] == name), None)
    if "--remove" in opts:
        if existing is None:
            fail(
                f"Could not find a storage controller named '{name}'",
                E_NOT_FOUND,
                "IMachine",
                "RemoveStorageController(Bstr(pszCtl).raw())",
                1080,
                "VBoxManageStorageController.cpp",
                component="SessionMachine",
            )
        vm["controllers"].remove(existing)
        vm["attachments"] = {k: v for k, v in vm["attachments"].items() if k.rsplit("-", 2)[0] != name}
        return
    if "--add" in opts:
        bus = opts["--add"]
        if bus not in CONTROLLERS:
            syntax(f"Invalid --add argument '{bus}'")
        if existing is not None:
            fail(
                f"Storage controller named '{name}' already exists",
                E_INVALID_OBJECT_STATE,
                "IMachine",
                "AddStorageController(...)",
                1110,
                "VBoxManageStorageController.cpp",
                component="SessionMachine",
            )
        ctype, maxports, _ = CONTROLLERS[bus]
        existing = {
            "name": name,
            "bus": bus,
            "type": opts.get("--controller", ctype),
            "ports": min(maxports, 2 if bus == "ide" else 1),
        }
        if existing["type"] not in CONTROLLER_MAX:
            syntax(f"Invalid --controller argument '{existing['type']}'")
        vm["controllers"].append(existing)
    if existing is None:
        fail(
            f"Could not find a storage controller named '{name}'",
            E_NOT_FOUND,
            "IMachine",
            "GetStorageControllerByName(...)",
            1150,
            "VBoxManageStorageController.cpp",
            component="SessionMachine",
        )
    if "--portcount" in opts:
        try:
            existing["ports"] = max(1, min(CONTROLLER_MAX[existing["type"]], int(opts["--portcount"])))
        except ValueError:
            syntax("Invalid --portcount argument")


def cmd_storageattach(st: State, args: list[str]) -> None:
    pos, opts = parse_opts(
        args,
        {
            "--storagectl",
            "--port",
            "--device",
            "--type",
            "--medium",
            "--mtype",
            "--hotpluggable",
            "--nonrotational",
            "--discard",
            "--comment",
        },
        positional=1,
    )
    if not pos or "--storagectl" not in opts:
        syntax("Missing VM name/UUID or --storagectl for 'storageattach'")
    vm = st.machine(pos[0], "FindMachine", "VBoxManageStorageController.cpp")
    ctl = next((c for c in vm["controllers"] if c["name"] == opts["--storagectl"]), None)
    if ctl is None:
        fail(
            f"Could not find a controller named '{opts['--storagectl']}'",
            E_NOT_FOUND,
            "IMachine",
            "GetStorageControllerByName(...)",
            480,
            "VBoxManageStorageController.cpp",
            component="SessionMachine",
        )
    try:
        port, device = int(opts.get("--port", "0")), int(opts.get("--device", "0"))
    except ValueError:
        syntax("Invalid --port or --device argument")
    if port < 0 or port >= CONTROLLER_MAX[ctl["type"]] or device < 0 or device > (1 if ctl["type"] == "PIIX4" else 0):
        fail(
            f"The port and/or device parameter are out of range: port={port} (must be in range [0, "
            f"{CONTROLLER_MAX[ctl['type']] - 1}]), device={device}",
            E_INVALIDARG,
            "IMachine",
            "AttachDevice(...)",
            500,
            "VBoxManageStorageController.cpp",
            component="SessionMachine",
        )
    key = f"{ctl['name']}-{port}-{device}"
    running = vm["state"] in ACTIVE
    current = vm["attachments"].get(key)
    if running and ctl["type"] != "IntelAhci":
        fail(
            f"Controller '{ctl['name']}' does not support hot-plugging",
            E_INVALID_VM_STATE,
            "IMachine",
            "AttachDevice(...)",
            520,
            "VBoxManageStorageController.cpp",
            component="SessionMachine",
        )
    if running and current is not None and not current.get("hotpluggable"):
        fail(
            f"The device slot {port}/{device} of controller '{ctl['name']}' is not hot-pluggable",
            E_INVALID_VM_STATE,
            "IMachine",
            "DetachDevice(...)",
            530,
            "VBoxManageStorageController.cpp",
            component="SessionMachine",
        )
    medium = opts.get("--medium")
    if medium is None:
        syntax("Missing --medium argument")
    if medium == "none":
        if current is None:
            fail(
                f"No storage device attached to device slot {device} on port {port} of controller '{ctl['name']}'",
                E_NOT_FOUND,
                "IMachine",
                "DetachDevice(...)",
                540,
                "VBoxManageStorageController.cpp",
                component="SessionMachine",
            )
        del vm["attachments"][key]
        return
    if medium == "emptydrive":
        vm["attachments"][key] = {"medium": None, "type": opts.get("--type", "dvddrive")}
        return
    if opts.get("--type", "hdd") != "hdd":
        syntax("vboxmanage_sim: only --type hdd media are simulated")
    if running and opts.get("--hotpluggable") != "on":
        fail(
            f"The device slot {port}/{device} of controller '{ctl['name']}' is not hot-pluggable",
            E_INVALID_VM_STATE,
            "IMachine",
            "AttachDevice(...)",
            530,
            "VBoxManageStorageController.cpp",
            component="SessionMachine",
        )
    m = st.open_medium(medium, "OpenMedium(...)")
    for other in st.users_of(m):
        if other is not vm:
            fail(
                f"Medium '{m['location']}' is already attached to the virtual machine '{other['name']}'",
                E_IN_USE,
                "IMachine",
                "AttachDevice(...)",
                560,
                "VBoxManageStorageController.cpp",
                component="SessionMachine",
            )
    if port >= ctl["ports"]:
        ctl["ports"] = port + 1
    vm["attachments"][key] = {"medium": m["uuid"], "type": "hdd", "hotpluggable": opts.get("--hotpluggable") == "on"}


def cmd_startvm(st: State, args: list[str]) -> None:
    pos, opts = parse_opts(args, {"--type", "--putenv", "-E"}, positional=1)
    if not pos:
        syntax("Missing VM name/UUID for 'startvm'")
    kind = opts.get("--type", "gui")
    if kind not in ("gui", "headless", "sdl", "separate"):
        syntax(f"Invalid session type '{kind}'")
    vm = st.machine(pos[0], "FindMachine", "VBoxManageMisc.cpp")
    if vm["state"] in ACTIVE:
        fail(
            f"The machine '{vm['name']}' is already locked by a session (or being locked or unlocked)",
            E_INVALID_OBJECT_STATE,
            "IMachine",
            "LaunchVMProcess(a->session, sessionType.raw(), ComSafeArrayAsInParam(aBstrEnv), progress.asOutParam())",
            881,
            "VBoxManageMisc.cpp",
            component="MachineWrap",
        )
    for att in vm["attachments"].values():
        if att.get("medium") and not os.path.exists(st.medium(att["medium"], "startvm")["location"]):
            fail(
                "Could not open the medium storage unit (VERR_FILE_NOT_FOUND)",
                E_FILE_ERROR,
                "IProgress",
                "progress->WaitForCompletion(-1)",
                900,
                "VBoxManageMisc.cpp",
                component="ProgressProxy",
            )
    out(f'Waiting for VM "{vm["name"]}" to power on...\n')
    if vm.get("teleporter"):
        teleport_in(st, vm)
        out(f'VM "{vm["name"]}" has been successfully started.\n')
        return
    if not vm.get("statefile"):
        vm["boots"] = vm.get("boots", 0) + 1  # a cold boot (resuming a saved state is not one)
        vm["ran_s"] = 0.0
    if vm.get("statefile"):
        with suppress(FileNotFoundError):
            os.unlink(vm["statefile"])
        vm["statefile"] = None
    set_state(vm, "running")
    out(f'VM "{vm["name"]}" has been successfully started.\n')


# --- teleporting (ConsoleImplTeleporter.cpp; the network between the simulated hosts is a shared directory) ---


def network_dir(context: str) -> str:
    """``VBOXSIM_NETWORK``: the directory the simulated hosts share as their network (a listening teleporter
    target is a file ``teleporter-<port>.json`` there). Teleporting fails without it."""
    net = os.environ.get("VBOXSIM_NETWORK")
    if not net or not os.path.isdir(net):
        fail(
            "vboxmanage_sim: teleporting needs VBOXSIM_NETWORK, the directory the simulated hosts share",
            ("E_FAIL", "0x80004005"),
            "IConsole",
            context,
            0,
            "vboxsim.py",
            component="Console",
        )
    return net


def host_names() -> list[str]:
    """The names and addresses this simulated host answers to (``VBOXSIM_HOST_NAMES``, comma-separated; by
    default ``localhost``, ``127.0.0.1`` and this machine's node name)."""
    names = os.environ.get("VBOXSIM_HOST_NAMES") or f"localhost,127.0.0.1,{os.uname().nodename}"
    return [n for n in names.split(",") if n]


def teleport_failed(message: str, code: tuple[str, str] = ("E_FAIL", "0x80004005")) -> NoReturn:
    """CHECK_PROGRESS_ERROR(progress, ("Teleportation failed")): the progress's error, then the context line."""
    err("\nProgress state: E_FAIL\n")
    err("VBoxManage: error: Teleportation failed\n")
    fail(message, code, "IConsole", "Teleport", 0, "VBoxManageControlVM.cpp", component="ConsoleWrap")


def teleport_in(st: State, vm: dict[str, Any]) -> None:
    """The target of a teleport: listen on the teleporter port (a random free one, 49152-65534 first, written
    back to TeleporterPort, when it is 0, as i_teleporterTrg does), state ``teleportingin``, and wait for the
    source. ``startvm`` returns once the VM has arrived (running, or paused when the source was paused); a
    ``controlvm poweroff`` meanwhile or ``VBOXSIM_TELEPORT_TIMEOUT`` seconds (VirtualBox: 5 minutes) fail it."""
    net = network_dir("LaunchVMProcess")
    original = int(vm.get("teleporter_port", 0))
    uuid = vm["uuid"]
    record = json_dumps(
        {
            "home": st.home,
            "uuid": uuid,
            "address": vm.get("teleporter_address", ""),
            "names": host_names(),
            "password": vm.get("teleporter_password", ""),
        }
    )
    tries = (
        [original]
        if original
        else (int.from_bytes(os.urandom(2), "big") % (65534 - low + 1) + low for low in [49152] * 2048 + [1024] * 8192)
    )
    path = ""
    for port in tries:
        path = os.path.join(net, f"teleporter-{port}.json")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(record)
        break
    else:
        fail(
            "RTTcpServerCreateEx failed with status VERR_NET_ADDRESS_IN_USE",
            ("E_FAIL", "0x80004005"),
            "IProgress",
            "progress->WaitForCompletion(-1)",
            900,
            "VBoxManageMisc.cpp",
            component="ProgressProxy",
        )
    vm["teleporter_port"] = port
    set_state(vm, "teleportingin")
    st.save()
    sys.stdout.flush()  # "Waiting for VM ... to power on..." is out before the wait
    deadline = time.time() + float(os.environ.get("VBOXSIM_TELEPORT_TIMEOUT", "300"))
    timed_out = False
    try:
        while True:
            st.unlock()
            time.sleep(0.02)  # the simulated VM process polls its own state file
            st.relock()
            found = next((m for m in st.data["machines"] if m["uuid"] == uuid), None)
            if found is None or found["state"] != "teleportingin":
                break
            if time.time() >= deadline:
                timed_out = True
                set_state(found, "poweroff")
                break
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)
    if found is not None:
        found["teleporter_port"] = original  # "set it back to its original value"
        vm.update(found)
    if found is not None and found["state"] in ("running", "paused"):
        return
    st.save()
    fail(
        "Teleporter timed out waiting for incoming connection" if timed_out else "Teleporting canceled",
        ("E_FAIL", "0x80004005"),
        "IProgress",
        "progress->WaitForCompletion(-1)",
        900,
        "VBoxManageMisc.cpp",
        component="ProgressProxy",
    )


def teleport_out(st: State, vm: dict[str, Any], rest: list[str]) -> None:
    """``controlvm VM teleport --host H --port P [--maxdowntime MS] [--passwordfile F|--password W]
    [--timeout MS] [--detailed-progress]`` (VBoxManageControlVM.cpp's options; --maxdowntime defaults to
    250 ms). The guest continues on the target (same boots, same run clock); the source is left
    ``teleported`` and stays registered. Each teleport is recorded in the source's state (``teleports``)."""
    _, opts = parse_opts(
        rest,
        {"--host", "--port", "--maxdowntime", "--passwordfile", "--password", "--timeout"},
        {"--detailed-progress"},
    )
    state = vm["state"]
    if state not in ("running", "paused"):
        fail(
            f"Invalid machine state: {state.capitalize()} (must be Running or Paused)",
            E_INVALID_VM_STATE,
            "IConsole",
            "Teleport(bstrHostname.raw(), uPort, Bstr(strPassword).raw(), uMaxDowntime, progress.asOutParam())",
            1700,
            "VBoxManageControlVM.cpp",
            component="ConsoleWrap",
        )
    for key in ("--port", "--maxdowntime", "--timeout"):
        if key in opts and not opts[key].isdigit():
            syntax(f"Invalid {key} value '{opts[key]}'")
    password = read_password_file(opts["--passwordfile"]) if "--passwordfile" in opts else opts.get("--password", "")
    host = opts.get("--host", "")
    port = int(opts.get("--port", "4294967295"))
    maxdowntime = int(opts.get("--maxdowntime", "250"))
    net = network_dir("Teleport")
    try:
        with open(os.path.join(net, f"teleporter-{port}.json")) as fh:
            listener = json_loads(fh.read())
    except (FileNotFoundError, ValueError):
        listener = None
    if listener is None or host not in listener["names"] or listener["address"] not in ("", host):
        teleport_failed(f"Failed to connect to port {port} on '{host}': VERR_NET_CONNECTION_REFUSED")
    if hash_password(password) != listener["password"]:
        teleport_failed("Invalid password")
    dst = st if listener["home"] == st.home else State(listener["home"])
    dvm = next((m for m in dst.data["machines"] if m["uuid"] == listener["uuid"]), None)
    if dvm is None or dvm["state"] != "teleportingin":
        teleport_failed(f"Failed to connect to port {port} on '{host}': VERR_NET_CONNECTION_REFUSED")

    def disks(machine: dict[str, Any], registry: State) -> list[str]:
        return sorted(
            registry.medium(a["medium"], "Teleport")["location"]
            for a in machine["attachments"].values()
            if a.get("medium")
        )

    # The target loads the saved state into its own configuration: the hardware must match and the disks be
    # the same files (teleporting needs shared storage; "lock-media" locks them on the target).
    if (dvm["memory"], dvm["cpus"]) != (vm["memory"], vm["cpus"]) or disks(dvm, dst) != disks(vm, st):
        teleport_failed(
            "Teleporter: the target's configuration or disks differ from the source's (VERR_SSM_LOAD_CONFIG_MISMATCH)"
        )
    err("0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%\n")
    set_state(vm, "teleported")  # accumulates the source's run clock
    dvm["boots"] = vm.get("boots", 0)
    dvm["ran_s"], dvm["running_since"] = vm.get("ran_s", 0.0), None
    set_state(dvm, "running" if state == "running" else "paused")  # hand-over-resume / hand-over-paused
    vm["ran_s"] = 0.0
    vm.setdefault("teleports", []).append({"host": host, "port": port, "maxdowntime": maxdowntime, "to": dvm["uuid"]})
    if dst is not st:
        dst.save()
    with suppress(FileNotFoundError):
        os.unlink(os.path.join(net, f"teleporter-{port}.json"))


def cmd_controlvm(st: State, args: list[str]) -> None:
    if len(args) < 2:
        syntax("Not enough parameters for 'controlvm'")
    vm = st.machine(args[0], "FindMachine", "VBoxManageControlVM.cpp")
    action, rest = args[1], args[2:]
    if action == "teleport":
        if vm["state"] not in ACTIVE:
            not_running(vm)
        teleport_out(st, vm, rest)
        return
    known = {"pause", "resume", "reset", "poweroff", "savestate", "acpipowerbutton", "acpisleepbutton"}
    if action not in known:
        syntax(f"Invalid parameter '{action}'")
    if rest:
        syntax(f"Invalid parameter '{rest[0]}'")
    if vm["state"] not in ACTIVE:
        not_running(vm)
    state = vm["state"]

    def invalid(wanted: str, call: str) -> NoReturn:
        fail(
            f"Invalid machine state: {state.capitalize()} (must be {wanted})",
            E_INVALID_VM_STATE,
            "IConsole",
            call,
            120,
            "VBoxManageControlVM.cpp",
            component="ConsoleWrap",
        )

    if action == "pause":
        if state != "running":
            invalid("Running, Teleporting or LiveSnapshotting", "Pause()")
        set_state(vm, "paused")
    elif action == "resume":
        if state != "paused":
            invalid("Paused", "Resume()")
        set_state(vm, "running")
    elif action == "reset":
        if state not in ("running", "paused"):
            invalid("Running or Paused", "Reset()")
        vm.pop("acpi_pressed", None)
        vm["boots"] = vm.get("boots", 0) + 1  # the guest boots again
        vm["ran_s"], vm["running_since"] = 0.0, None
        set_state(vm, state)
    elif action == "poweroff":
        progress()
        vm.pop("acpi_pressed", None)
        set_state(vm, "poweroff")
    elif action == "acpipowerbutton":
        if state != "running":
            invalid("Running", "PowerButton()")
        if os.environ.get("VBOXSIM_ACPI", "on") == "on":
            vm["acpi_pressed"] = time.time()
    elif action == "acpisleepbutton":
        if state != "running":
            invalid("Running", "SleepButton()")
    elif action == "savestate":
        if state not in ("running", "paused"):
            invalid("Running or Paused", "SaveState()")
        folder = os.path.join(os.path.dirname(vm["cfgfile"]), "Snapshots")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, time.strftime("%Y-%m-%dT%H-%M-%S-") + f"{int(time.time() % 1 * 1e6):06d}" + ".sav")
        with open(path, "wb") as fh:
            fh.write(b"vboxmanage_sim saved state\n")
        progress()
        vm.pop("acpi_pressed", None)
        vm["statefile"] = path
        set_state(vm, "saved")


def cmd_discardstate(st: State, args: list[str]) -> None:
    pos, _ = parse_opts(args, set(), positional=1)
    if not pos:
        syntax("Missing VM name/UUID for 'discardstate'")
    vm = st.machine(pos[0], "FindMachine", "VBoxManageMisc.cpp")
    if vm["state"] != "saved":
        fail(
            f"Cannot discard the saved state as the machine is not in the saved state (machine state: "
            f"{vm['state'].capitalize()})",
            E_INVALID_VM_STATE,
            "IMachine",
            "DiscardSavedState(true)",
            1500,
            "VBoxManageMisc.cpp",
            component="SessionMachine",
        )
    with suppress(FileNotFoundError, TypeError):
        os.unlink(vm["statefile"])
    vm["statefile"] = None
    set_state(vm, "poweroff")


def cmd_unregistervm(st: State, args: list[str]) -> None:
    pos, opts = parse_opts(args, set(), {"--delete", "--delete-all"}, positional=1)
    if not pos:
        syntax("Missing VM name/UUID for 'unregistervm'")
    vm = st.machine(pos[0], "FindMachine", "VBoxManageMisc.cpp")
    if vm["state"] in ACTIVE:
        fail(
            f"Cannot unregister the machine '{vm['name']}' while it is locked",
            E_INVALID_OBJECT_STATE,
            "IMachine",
            "Unregister(CleanupMode_DetachAllReturnHardDisksOnly, ...)",
            170,
            "VBoxManageMisc.cpp",
            component="MachineWrap",
        )
    st.data["machines"].remove(vm)
    if "--delete" in opts or "--delete-all" in opts:
        # CleanupMode_DetachAllReturnHardDisksOnly + deleteConfig (VBoxManageMisc.cpp): every hard disk the
        # machine *and its snapshots* hold is returned by IMachine::unregister and deleted, not only the
        # ones attached now (the simulator has no differencing images: a snapshot holds the disk itself).
        held = [att.get("medium") for att in vm["attachments"].values()]
        for snap in vm["snapshots"]:
            held += [att.get("medium") for att in snap["config"]["attachments"].values()]
        for uuid in dict.fromkeys(u for u in held if u):
            medium = next((m for m in st.data["media"] if m["uuid"] == uuid), None)
            if medium is not None:
                st.data["media"].remove(medium)
                with suppress(FileNotFoundError):
                    os.unlink(medium["location"])
        progress()
        import shutil  # only here: it imports bz2/lzma

        shutil.rmtree(os.path.dirname(vm["cfgfile"]), ignore_errors=True)


def cmd_snapshot(st: State, args: list[str]) -> None:
    if len(args) < 2:
        syntax("Not enough parameters for 'snapshot'")
    vm = st.machine(args[0], "FindMachine", "VBoxManageSnapshot.cpp")
    action, rest = args[1], args[2:]
    if action == "take":
        # VBoxManageSnapshot.cpp: the name is a->argv[2] as is; options are parsed from the next argument on
        if not rest:
            syntax("Missing snapshot name")
        _, opts = parse_opts(rest[1:], {"--description", "--uniquename"}, {"--live", "--pause"})
        snap = {
            "uuid": new_uuid(),
            "name": rest[0],
            "description": opts.get("--description", ""),
            "parent": vm.get("current_snapshot"),
            "time": now(),
            "online": vm["state"] in ("running", "paused"),
            "config": {k: vm[k] for k in ("memory", "cpus", "controllers", "attachments", "nics")},
            "state": vm["state"],
        }
        vm["snapshots"].append(snap)
        vm["current_snapshot"] = snap["uuid"]
        progress()
        out(f"Snapshot taken. UUID: {snap['uuid']}\n")
        return
    if action == "list":
        _, opts = parse_opts(rest, set(), {"--machinereadable", "--details"})
        if not vm["snapshots"]:
            out("This machine does not have any snapshots\n")
            raise Exit(1)
        if "--machinereadable" in opts:
            out("\n".join(snapshot_lines(vm)) + "\n")
        else:
            for suffix, snap in snapshot_nodes(vm):
                mark = " *" if snap["uuid"] == vm.get("current_snapshot") else ""
                indent = "   " * suffix.count("-")
                out(f"{indent}Name: {snap['name']} (UUID: {snap['uuid']}){mark}\n")
        return
    if action in ("restore", "delete", "showvminfo"):
        # FindSnapshot(Bstr(a->argv[2])): the name or UUID is taken as is, never parsed as an option
        if len(rest) != 1:
            syntax("Missing snapshot name or UUID" if not rest else f"Invalid parameter '{rest[1]}'")
        pos = rest
        snap = next((s for s in vm["snapshots"] if s["uuid"] == pos[0].lower()), None) or next(
            (s for s in vm["snapshots"] if s["name"] == pos[0]), None
        )
        if snap is None:
            fail(
                f"Could not find a snapshot named '{pos[0]}'",
                E_NOT_FOUND,
                "IMachine",
                "FindSnapshot(Bstr(a->argv[2]).raw(), pSnapshot.asOutParam())",
                582,
                "VBoxManageSnapshot.cpp",
                component="MachineWrap",
            )
        if action == "showvminfo":
            out(f"Name: {snap['name']}\nUUID: {snap['uuid']}\n")
            return
        if action == "restore":
            if vm["state"] in ACTIVE:
                fail(
                    f"Cannot delete the current state of the running machine (machine state: "
                    f"{vm['state'].capitalize()})",
                    E_INVALID_VM_STATE,
                    "IMachine",
                    "RestoreSnapshot(pSnapshot, pProgress.asOutParam())",
                    600,
                    "VBoxManageSnapshot.cpp",
                    component="SessionMachine",
                )
            out(f"Restoring snapshot '{snap['name']}' ({snap['uuid']})\n")
            progress()
            for key, value in snap["config"].items():
                vm[key] = json_loads(json_dumps(value))
            vm["current_snapshot"] = snap["uuid"]
            if vm.get("statefile"):
                with suppress(FileNotFoundError):
                    os.unlink(vm["statefile"])
                vm["statefile"] = None
            if snap["online"]:
                folder = os.path.join(os.path.dirname(vm["cfgfile"]), "Snapshots")
                os.makedirs(folder, exist_ok=True)
                vm["statefile"] = os.path.join(folder, f"{{{snap['uuid']}}}.sav")
                with open(vm["statefile"], "wb") as fh:
                    fh.write(b"vboxmanage_sim saved state\n")
                set_state(vm, "saved")
            else:
                set_state(vm, "poweroff")
            return
        children = [s for s in vm["snapshots"] if s["parent"] == snap["uuid"]]
        if len(children) > 1:
            fail(
                f"Snapshot '{snap['name']}' of the machine '{vm['name']}' has more than one child snapshot "
                f"({len(children)} children)",
                E_INVALID_OBJECT_STATE,
                "IMachine",
                "DeleteSnapshot(bstrSnapGuid.raw(), pProgress.asOutParam())",
                640,
                "VBoxManageSnapshot.cpp",
                component="SessionMachine",
            )
        progress()
        for child in children:
            child["parent"] = snap["parent"]
        if vm.get("current_snapshot") == snap["uuid"]:
            vm["current_snapshot"] = snap["parent"]
        vm["snapshots"].remove(snap)
        return
    syntax(f"Invalid parameter '{action}'")


def medium_args(rest: list[str]) -> list[str]:
    if rest and rest[0] in ("disk", "dvd", "floppy"):
        if rest[0] != "disk":
            syntax("vboxmanage_sim: only disk media are simulated")
        return rest[1:]
    return rest


def cmd_createmedium(st: State, args: list[str]) -> None:
    _, opts = parse_opts(
        medium_args(args),
        {"--filename", "--size", "--sizebyte", "--format", "--variant", "--diffparent"},
        aliases={"--name": "--filename"},
    )
    filename = opts.get("--filename")
    if not filename:
        syntax("Parameters --filename is required")
    fmt = opts.get("--format", "VDI").upper()
    if fmt not in FORMATS or fmt == "VHDX":
        fail(
            f"Could not find a storage format backend for '{opts.get('--format')}'",
            E_INVALIDARG,
            "IVirtualBox",
            "CreateMedium(...)",
            250,
            "VBoxManageDisk.cpp",
        )
    if not os.path.isabs(filename):
        filename = os.path.join(st.machine_folder, filename)
    parent = None
    size = parse_size(opts, "--size", "--sizebyte")
    if "--diffparent" in opts:
        parent = st.medium(opts["--diffparent"], "OpenMedium(...)")
        size = parent["capacity"]
    if size is None or size <= 0:
        syntax("Parameters --size or --sizebyte are required")
    if any(m["location"] == filename for m in st.data["media"]) or os.path.exists(filename):
        fail(
            f"Failed to create medium\nCould not create the medium storage unit '{filename}'.\n"
            f"VBoxManage: error: {fmt}: cannot create image '{filename}' (VERR_ALREADY_EXISTS)",
            E_FILE_ERROR,
            "IMedium",
            "CreateBaseStorage(...)",
            320,
            "VBoxManageDisk.cpp",
            component="MediumWrap",
        )
    directory = os.path.dirname(filename)
    if not os.path.isdir(directory):
        fail(
            f"Failed to create medium\nCould not create the medium storage unit '{filename}'.\n"
            f"VBoxManage: error: {fmt}: cannot create image '{filename}' (VERR_PATH_NOT_FOUND)",
            E_FILE_ERROR,
            "IMedium",
            "CreateBaseStorage(...)",
            320,
            "VBoxManageDisk.cpp",
            component="MediumWrap",
        )
    size = (size + MIB - 1) // MIB * MIB  # images are whole MiB
    with open(filename, "wb") as fh:
        fh.write(FORMATS[fmt])
        if fmt == "RAW":
            fh.truncate(size)
    medium = {
        "uuid": new_uuid(),
        "location": filename,
        "format": fmt,
        "capacity": size,
        "parent": parent["uuid"] if parent else None,
        "variant": "fixed default"
        if opts.get("--variant", "").lower() == "fixed" or fmt == "RAW"
        else "dynamic default",
    }
    st.data["media"].append(medium)
    progress()
    out(f"Medium created. UUID: {medium['uuid']}\n")


def cmd_closemedium(st: State, args: list[str]) -> None:
    pos, opts = parse_opts(medium_args(args), set(), {"--delete"}, positional=1)
    if not pos:
        syntax("Missing medium UUID or file name for 'closemedium'")
    medium = st.medium(pos[0], "OpenMedium(...)")
    users = st.users_of(medium)
    if users:
        fail(
            f"Cannot close medium '{medium['location']}' because it is still attached to 1 virtual machines",
            E_IN_USE,
            "IMedium",
            "Close()",
            1780,
            "VBoxManageDisk.cpp",
            component="MediumWrap",
        )
    children = [m for m in st.data["media"] if m["parent"] == medium["uuid"]]
    if children:
        fail(
            f"Cannot close medium '{medium['location']}' because it has {len(children)} child media",
            E_IN_USE,
            "IMedium",
            "Close()",
            1780,
            "VBoxManageDisk.cpp",
            component="MediumWrap",
        )
    st.data["media"].remove(medium)
    if "--delete" in opts:
        progress()
        with suppress(FileNotFoundError):
            os.unlink(medium["location"])


def cmd_modifymedium(st: State, args: list[str]) -> None:
    pos, opts = parse_opts(
        medium_args(args),
        {"--resize", "--resizebyte", "--type", "--description", "--move"},
        {"--compact"},
        positional=1,
    )
    if not pos:
        syntax("Missing medium UUID or file name for 'modifymedium'")
    medium = st.medium(pos[0], "OpenMedium(...)")
    size = parse_size(opts, "--resize", "--resizebyte")
    if size is not None:
        for vm in st.users_of(medium):
            if vm["state"] in ACTIVE:
                fail(
                    f"Medium '{medium['location']}' is locked for writing by another task",
                    E_INVALID_OBJECT_STATE,
                    "IMedium",
                    "Resize(cbResize, pProgress.asOutParam())",
                    1000,
                    "VBoxManageDisk.cpp",
                    component="MediumWrap",
                )
        size = (size + MIB - 1) // MIB * MIB
        if size < medium["capacity"]:
            fail(
                f"Shrinking is not yet supported for medium '{medium['location']}'",
                E_INVALID_OBJECT_STATE,
                "IMedium",
                "Resize(cbResize, pProgress.asOutParam())",
                1000,
                "VBoxManageDisk.cpp",
                component="MediumWrap",
            )
        if medium["format"] not in ("VDI", "VHD", "VMDK", "QCOW", "QED", "RAW"):
            fail(
                f"Resize medium operation for format '{medium['format']}' is not implemented yet",
                E_INVALID_OBJECT_STATE,
                "IMedium",
                "Resize(...)",
                1000,
                "VBoxManageDisk.cpp",
                component="MediumWrap",
            )
        progress()
        medium["capacity"] = size
        if medium["format"] == "RAW":
            os.truncate(medium["location"], size)


def medium_block(st: State, m: dict[str, Any], detailed: bool) -> str:
    """One medium as ``list hdds`` prints it, or (``detailed``) as ``showmediuminfo`` does: that one adds
    the format variant and the size on disk."""
    exists = os.path.exists(m["location"])
    lines = [
        f"UUID:           {m['uuid']}",
        f"Parent UUID:    {m['parent'] or 'base'}",
        f"State:          {'created' if exists else 'inaccessible'}",
        f"Type:           normal ({'differencing' if m['parent'] else 'base'})",
        f"Location:       {m['location']}",
        f"Storage format: {m['format']}",
    ]
    if detailed:
        lines.append(f"Format variant: {m['variant']}")
    lines.append(f"Capacity:       {m['capacity'] // MIB} MBytes")
    if detailed:
        on_disk = max(1, os.path.getsize(m["location"]) // MIB) if exists else 0
        lines.append(f"Size on disk:   {on_disk} MBytes")
    lines.append("Encryption:     disabled")
    return "\n".join(lines) + "\n" + in_use(st.users_of(m))


def cmd_showmediuminfo(st: State, args: list[str]) -> None:
    pos, _ = parse_opts(medium_args(args), set(), positional=1)
    if not pos:
        syntax("Missing medium UUID or file name for 'showmediuminfo'")
    out(medium_block(st, st.medium(pos[0], "OpenMedium(...)"), detailed=True))


COMMANDS = {
    "list": cmd_list,
    "showvminfo": cmd_showvminfo,
    "createvm": cmd_createvm,
    "modifyvm": cmd_modifyvm,
    "storagectl": cmd_storagectl,
    "storageattach": cmd_storageattach,
    "startvm": cmd_startvm,
    "controlvm": cmd_controlvm,
    "discardstate": cmd_discardstate,
    "unregistervm": cmd_unregistervm,
    "snapshot": cmd_snapshot,
    "createmedium": cmd_createmedium,
    "createhd": cmd_createmedium,
    "closemedium": cmd_closemedium,
    "modifymedium": cmd_modifymedium,
    "modifyhd": cmd_modifymedium,
    "showmediuminfo": cmd_showmediuminfo,
    "showhdinfo": cmd_showmediuminfo,
    "hostonlyif": cmd_hostonlyif,
    "natnetwork": cmd_natnetwork,
    "dhcpserver": cmd_dhcpserver,
    "hostonlynet": cmd_hostonlynet,
}
READ_ONLY = {"list", "showvminfo", "showmediuminfo", "showhdinfo"}


def main(argv: list[str]) -> int:
    args = list(argv)
    while args and args[0] in ("-q", "--nologo"):
        args.pop(0)
    if not args:
        out(
            f"Oracle VM VirtualBox Command Line Management Interface Version {VERSION.split('r')[0]}\n"
            "Usage: VBoxManage [<general option>] <command>\n"
        )
        return 2
    if args[0] in ("--version", "-v", "-V"):
        if os.environ.get("VBOXSIM_NO_KMOD"):
            # what a Linux host without the vboxdrv module prints first (5.2's wording, as captured in
            # tests/real_outputs/version-5.2-warning-minikube.txt), on stdout like the version
            out(KMOD_WARNING.format(kernel=os.uname().release))
        out(VERSION + "\n")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        err(f"VBoxManage: error: Invalid command '{args[0]}'\n")
        return 2
    home = os.environ.get("VBOX_USER_HOME")
    if not home:
        err("VBoxManage: error: vboxmanage_sim needs VBOX_USER_HOME (the directory that holds its state)\n")
        return 1
    state = State(home)
    try:
        command(state, args[1:])
    except Exit as exc:
        if exc.status == 0 and (args[0] not in READ_ONLY or state.dirty):
            state.save()
        return exc.status  # a failed command changes nothing
    if args[0] not in READ_ONLY or state.dirty:
        state.save()  # after a read only when the ACPI clock powered a guest off
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
