"""The WS-Management endpoint: WinRM's remote shell over SOAP 1.2 on HTTP(S) (test infrastructure).

Implements what pywinrm 0.5.0 sends (Create, Command, Receive, Signal, Delete on the resource
``.../windows/shell/cmd``): every reply carries ``RelatesTo`` = the request's ``MessageID``; operations
after Create address the shell by the ``ShellId`` selector; connections are HTTP/1.1 keep-alive with
Nagle disabled; a Receive with nothing to say within ``OperationTimeout`` answers the WS-Man timeout
fault (code 2150858793), which pywinrm retries. A ``Command`` of ``powershell -encodedcommand B64``
runs the script through the PowerShell subset interpreter; stdout is encoded in the shell's code page
(``WINRS_CODEPAGE``, 437 unless the client asks for 65001), stderr is CLIXML as powershell.exe writes it
when its error stream is redirected.

Authentication: HTTP Basic (over HTTPS, or over HTTP when ``allow_unencrypted``), and NTLM with
SPNEGO session encryption over HTTP when pyspnego is importable (``_ntlm``).
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from ._clixml import error_clixml
from ._ps import CommandTable, Interpreter, PSError, to_string

__all__ = ["WSManServer"]

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
A_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
A_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
A_COMMAND = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command"
A_RECEIVE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive"
A_SIGNAL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal"
A_SEND = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send"
TIMEOUT_CODE = 2150858793
SHELL_NOT_FOUND_CODE = 2150858843
CMD_LIMIT = 8191


@dataclass
class RunningCommand:
    """One command of a shell: its output chunks, exit code and cancel flag."""

    id: str
    stdout: list[bytes] = field(default_factory=list)
    stderr: list[bytes] = field(default_factory=list)
    exit_code: int | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    cond: threading.Condition = field(default_factory=threading.Condition)


@dataclass
class Shell:
    """A WinRM shell (cmd.exe) with its code page."""

    id: str
    codepage: int
    commands: dict[str, RunningCommand] = field(default_factory=dict)


def _duration(text: str | None, default: float) -> float:
    m = re.fullmatch(r"PT(?:(\d+)M)?(\d+(?:\.\d+)?)S", (text or "").strip())
    if not m:
        return default
    return int(m.group(1) or 0) * 60 + float(m.group(2))


def _envelope(action: str, relates_to: str, body: str, extra_header: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:w="{NS["w"]}" xmlns:rsp="{NS["rsp"]}" '
        f'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" xml:lang="en-US"><s:Header>'
        f"<a:Action>{action}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>{extra_header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


CREATE_PROCESS_LIMIT = 32767
"""The longest command line CreateProcess takes (ERROR_FILENAME_EXCED_RANGE, 0x800700CE, past it)."""


def fault_body(code: str, subcode: str, text: str, wsman_code: int, relates_to: str = "") -> bytes:
    """A SOAP 1.2 fault with the WSManFault detail pywinrm reads."""
    body = (
        f"<s:Fault><s:Code><s:Value>s:{code}</s:Value><s:Subcode><s:Value>w:{subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(text)}</s:Text></s:Reason><s:Detail>'
        f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{wsman_code}" '
        f'Machine="127.0.0.1"><f:Message>{escape(text)}</f:Message></f:WSManFault></s:Detail></s:Fault>'
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


class WSManServer:
    """A threaded WS-Man server on 127.0.0.1 running PowerShell against ``commands``."""

    def __init__(
        self,
        commands: CommandTable,
        *,
        username: str,
        password: str,
        tls: ssl.SSLContext | None = None,
        allow_unencrypted: bool = False,
        ntlm: bool = False,
        port: int = 0,
        state_dir: Path | None = None,
    ) -> None:
        self.commands = commands
        self.username = username
        self.password = password
        self.allow_unencrypted = allow_unencrypted
        self.shells: dict[str, Shell] = {}
        self.lock = threading.Lock()
        self.requests = 0
        self.connections = 0
        self.nodelay: list[int] = []
        self.timeouts = 0
        self.sealed = 0
        self.commands_run = 0
        self.scripts: list[str] = []
        self.fault_plan: list[str] = []  # injected: "401", "500", "stall:<seconds>"
        self.ntlm: Any = None
        if ntlm:
            from ._ntlm import NtlmAcceptor

            self.ntlm = NtlmAcceptor(username, password, state_dir)
        server = self

        class Handler(_Handler):
            sim = server

        self.httpd = _Server(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls is not None else "http"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/wsman"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="wsman-sim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for sh in self.shells.values():
                for c in sh.commands.values():
                    c.cancel.set()
            self.shells.clear()

    # --- operations ------------------------------------------------------------------------------------

    def handle(self, xml: bytes) -> tuple[int, bytes]:
        try:
            root = ET.fromstring(xml)
        except ET.ParseError:
            return 400, fault_body(
                "Sender",
                "SchemaValidationError",
                "The SOAP XML in the message does not match the corresponding XML schema definition.",
                2150858817,
            )
        header = root.find("s:Header", NS)
        body = root.find("s:Body", NS)
        if header is None or body is None:
            return 400, fault_body("Sender", "SchemaValidationError", "Missing SOAP header or body.", 2150858817)
        action = (header.findtext("a:Action", "", NS) or "").strip()
        mid = (header.findtext("a:MessageID", "", NS) or "").strip()
        resource = (header.findtext("w:ResourceURI", "", NS) or "").strip()
        if resource != SHELL_URI:
            return 500, fault_body(
                "Sender",
                "DestinationUnreachable",
                f"The WS-Management service cannot process the request. The resource URI {resource} was not found.",
                2150858770,
                mid,
            )
        options = {o.get("Name", ""): (o.text or "") for o in header.findall("w:OptionSet/w:Option", NS)}
        shell_id = next(
            (s.text or "" for s in header.findall("w:SelectorSet/w:Selector", NS) if s.get("Name") == "ShellId"), ""
        )
        timeout = _duration(header.findtext("w:OperationTimeout", "", NS), 60.0)
        if action == A_CREATE:
            sid = str(uuid.uuid4()).upper()
            cp = int(options.get("WINRS_CODEPAGE", "437") or 437)
            with self.lock:
                self.shells[sid] = Shell(sid, cp)
            out = (
                f"<x:ResourceCreated><a:Address>{escape(self.url)}</a:Address><a:ReferenceParameters>"
                f'<w:ResourceURI>{SHELL_URI}</w:ResourceURI><w:SelectorSet><w:Selector Name="ShellId">{sid}'
                "</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>"
                # the fields and order of a real WinRM service's CreateResponse (tests/real_outputs/
                # masterzen-winrm-createShellResponse.xml); the simulator listens on 127.0.0.1 only
                f"<rsp:Shell><rsp:ShellId>{sid}</rsp:ShellId><rsp:ResourceUri>{SHELL_URI}</rsp:ResourceUri>"
                f"<rsp:Owner>{escape(self.username)}</rsp:Owner><rsp:ClientIP>127.0.0.1</rsp:ClientIP>"
                "<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
                "<rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams>"
                "<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
                "</rsp:Shell>"
            )
            return 200, _envelope("http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse", mid, out)
        with self.lock:
            shell = self.shells.get(shell_id)
        if shell is None:
            return 500, fault_body(
                "Sender",
                "InvalidSelectors",
                f"The request for the Windows Remote Shell with "
                f"ShellId {shell_id} failed because the shell was not found on the server. "
                "Possible causes are: the specified ShellId is incorrect or the shell no longer "
                "exists on the server.",
                SHELL_NOT_FOUND_CODE,
                mid,
            )
        if action == A_DELETE:
            with self.lock:
                self.shells.pop(shell.id, None)
            for c in shell.commands.values():
                c.cancel.set()
            return 200, _envelope("http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse", mid, "")
        if action == A_COMMAND:
            line = body.findtext("rsp:CommandLine/rsp:Command", "", NS) or ""
            args = [a.text or "" for a in body.findall("rsp:CommandLine/rsp:Arguments", NS)]
            if len(" ".join([line, *args]).strip()) > CREATE_PROCESS_LIMIT:
                # past CreateProcess's limit the service itself refuses the command (a real fault:
                # tests/real_outputs/masterzen-winrm-executeCommandResponseWithError.xml); shorter lines
                # past cmd.exe's 8,191 characters start and get cmd.exe's own message
                return 500, fault_body(
                    "Receiver", "InternalError", "The filename or extension is too long. ", 2147942606, mid
                )
            cmd = RunningCommand(str(uuid.uuid4()).upper())
            shell.commands[cmd.id] = cmd
            threading.Thread(target=self._run, args=(shell, cmd, " ".join([line, *args]).strip()), daemon=True).start()
            out = f"<rsp:CommandResponse><rsp:CommandId>{cmd.id}</rsp:CommandId></rsp:CommandResponse>"
            return 200, _envelope(A_COMMAND + "Response", mid, out)
        if action == A_RECEIVE:
            ds = body.find("rsp:Receive/rsp:DesiredStream", NS)
            cid = ds.get("CommandId", "") if ds is not None else ""
            cmd = shell.commands.get(cid)
            if cmd is None:
                return 500, fault_body(
                    "Sender", "InvalidParameter", f"The command {cid} was not found.", 2150858843, mid
                )
            with cmd.cond:
                cmd.cond.wait_for(lambda: bool(cmd.stdout or cmd.stderr or cmd.exit_code is not None), timeout)
                out_chunks, err_chunks = cmd.stdout[:], cmd.stderr[:]
                cmd.stdout.clear()
                cmd.stderr.clear()
                code = cmd.exit_code
            if not out_chunks and not err_chunks and code is None:
                with self.lock:
                    self.timeouts += 1
                return 500, fault_body(
                    "Receiver",
                    "TimedOut",
                    "The WS-Management service cannot complete the "
                    "operation within the time specified in OperationTimeout.",
                    TIMEOUT_CODE,
                    mid,
                )
            parts = [
                f'<rsp:Stream Name="stdout" CommandId="{cid}">{base64.b64encode(c).decode()}</rsp:Stream>'
                for c in out_chunks
            ]
            parts += [
                f'<rsp:Stream Name="stderr" CommandId="{cid}">{base64.b64encode(c).decode()}</rsp:Stream>'
                for c in err_chunks
            ]
            if code is not None:
                parts.append(
                    f'<rsp:Stream Name="stdout" CommandId="{cid}" End="true"></rsp:Stream>'
                    f'<rsp:Stream Name="stderr" CommandId="{cid}" End="true"></rsp:Stream>'
                    f'<rsp:CommandState CommandId="{cid}" State="http://schemas.microsoft.com/wbem/wsman/1/'
                    f'windows/shell/CommandState/Done"><rsp:ExitCode>{code}</rsp:ExitCode>'
                    "</rsp:CommandState>"
                )
            else:
                parts.append(
                    f'<rsp:CommandState CommandId="{cid}" State="http://schemas.microsoft.com/wbem/wsman/1/'
                    'windows/shell/CommandState/Running"></rsp:CommandState>'
                )
            out = "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>"
            return 200, _envelope(A_RECEIVE + "Response", mid, out)
        if action == A_SIGNAL:
            sig = body.find("rsp:Signal", NS)
            cid = sig.get("CommandId", "") if sig is not None else ""
            cmd = shell.commands.pop(cid, None)
            if cmd is not None:
                cmd.cancel.set()
            return 200, _envelope(A_SIGNAL + "Response", mid, "<rsp:SignalResponse/>")
        if action == A_SEND:
            return 200, _envelope(A_SEND + "Response", mid, "<rsp:SendResponse/>")
        return 500, fault_body(
            "Sender", "ActionNotSupported", f"The action {action} is not supported.", 2150858771, mid
        )

    def _run(self, shell: Shell, cmd: RunningCommand, line: str) -> None:
        codepage = "utf-8" if shell.codepage == 65001 else "cp437"

        def out(b: bytes) -> None:
            with cmd.cond:
                cmd.stdout.append(b)
                cmd.cond.notify_all()

        def finish(code: int, err: bytes = b"") -> None:
            with cmd.cond:
                if err:
                    cmd.stderr.append(err)
                cmd.exit_code = code
                cmd.cond.notify_all()

        if len(line) > CMD_LIMIT:
            finish(1, b"The command line is too long.\r\n")
            return
        m = re.fullmatch(
            r"powershell(?:\.exe)?\s+(?:-NoProfile\s+)?(?:-NonInteractive\s+)?-(?:e|ec|encodedcommand)\s+"
            r"([A-Za-z0-9+/=]+)",
            line.strip(),
            re.IGNORECASE,
        )
        if not m:
            first = line.split(" ", 1)[0]
            finish(
                1,
                f"'{first}' is not recognized as an internal or external command,\r\noperable program or batch "
                "file.\r\n".encode(codepage, errors="replace"),
            )
            return
        try:
            script = base64.b64decode(m.group(1)).decode("utf-16-le")
        except (ValueError, UnicodeDecodeError):
            finish(
                1,
                b"Cannot process the command because the value specified with -EncodedCommand is not "
                b"properly encoded. The value must be Base64 encoded.\r\n",
            )
            return
        with self.lock:
            self.commands_run += 1
            self.scripts.append(script)

        def sink(value: Any) -> None:
            if isinstance(value, str):
                out((value + "\r\n").encode(codepage, errors="replace"))
            else:  # the host formats objects as a table; a client expecting JSON fails on it
                out((f"\r\n{to_string(value)}\r\n").encode(codepage, errors="replace"))

        interp = Interpreter(self.commands, cancel=cmd.cancel, out_sink=sink)
        try:
            code = interp.run(script)
        except Exception as exc:  # an interpreter bug must not look like a hang
            interp.errors.append(PSError(f"simulator internal error: {exc!r}"))
            code = 1
        err = error_clixml(interp.errors, script) if interp.errors else b""
        finish(code, err)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError):
            return  # a client that refused our certificate or went away
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sim: WSManServer
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.sim.lock:
            self.sim.connections += 1
            self.sim.nodelay.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()
        self.ntlm_ctx: Any = None

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(
        self,
        code: int,
        body: bytes,
        ctype: str = "application/soap+xml;charset=UTF-8",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        sim = self.sim
        length = int(self.headers.get("Content-Length", "0") or 0)
        data = self.rfile.read(length) if length else b""
        with sim.lock:
            sim.requests += 1
            plan = sim.fault_plan.pop(0) if sim.fault_plan else ""
        if self.path.split("?")[0].lower() != "/wsman":
            self._reply(404, b"", "text/html")
            return
        if plan.startswith("stall:"):
            threading.Event().wait(float(plan.split(":", 1)[1]))
        auth = self.headers.get("Authorization", "")
        if plan == "401":
            self._reply(401, b"", "text/html", {"WWW-Authenticate": 'Basic realm="WSMAN"'})
            return
        if auth.startswith(("Negotiate ", "NTLM ")) and sim.ntlm is not None:
            self._ntlm_handshake(auth, data)
            return
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/encrypted") and sim.ntlm is not None:
            self._encrypted(data, ctype)
            return
        if sim.ntlm is not None and sim.scheme == "https" and self.ntlm_ctx is not None and self.ntlm_ctx.complete:
            # NTLM over HTTPS: the connection is authenticated, TLS protects the plain SOAP bodies
            code, body = sim.handle(data)
            self._reply(code, body)
            return
        if not self._basic_ok(auth):
            hdrs = {"WWW-Authenticate": 'Basic realm="WSMAN"'}
            if sim.ntlm is not None:
                hdrs = {"WWW-Authenticate": "Negotiate"}
            self._reply(401, b"", "text/html", hdrs)
            return
        if plan == "500":
            self._reply(500, b"<html><body>Internal Server Error</body></html>", "text/html")
            return
        code, body = sim.handle(data)
        self._reply(code, body)

    def _basic_ok(self, auth: str) -> bool:
        sim = self.sim
        if not auth.startswith("Basic "):
            return False
        if sim.scheme == "http" and not sim.allow_unencrypted:
            return False
        try:
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == sim.username and pw == sim.password

    def _ntlm_handshake(self, auth: str, data: bytes) -> None:
        assert self.sim.ntlm is not None
        scheme, _, token = auth.partition(" ")
        if self.ntlm_ctx is None:
            self.ntlm_ctx = self.sim.ntlm.new_context()
        try:
            out = self.ntlm_ctx.step(base64.b64decode(token))
        except Exception:
            self.ntlm_ctx = None
            self._reply(401, b"", "text/html", {"WWW-Authenticate": "Negotiate"})
            return
        if not self.ntlm_ctx.complete:
            self._reply(
                401, b"", "text/html", {"WWW-Authenticate": f"{scheme} {base64.b64encode(out or b'').decode()}"}
            )
            return
        if data and self.headers.get("Content-Type", "").startswith("multipart/encrypted"):
            self._encrypted(data, self.headers.get("Content-Type", ""))  # the first sealed message
            return
        if data and self.sim.scheme == "https":  # NTLM over TLS: the first SOAP message, in clear text
            code, body = self.sim.handle(data)
            self._reply(code, body)
            return
        if data:  # clear text over plain HTTP: refused, as AllowUnencrypted=false refuses it
            self._reply(401, b"", "text/html", {"WWW-Authenticate": "Negotiate"})
            return
        # The final leg: pywinrm sends it with an empty body to set up the context.
        self._reply(200, b"", "application/soap+xml;charset=UTF-8")

    def _encrypted(self, data: bytes, ctype: str) -> None:
        if self.ntlm_ctx is None or not self.ntlm_ctx.complete:
            self._reply(401, b"", "text/html", {"WWW-Authenticate": "Negotiate"})
            return
        if not data:
            self._reply(200, b"", "application/soap+xml;charset=UTF-8")
            return
        from ._ntlm import unwrap_message, wrap_message

        try:
            plain = unwrap_message(self.ntlm_ctx, data)
        except Exception:
            self._reply(400, b"", "text/html")
            return
        with self.sim.lock:
            self.sim.sealed += 1
        code, body = self.sim.handle(plain)
        payload, out_ctype = wrap_message(self.ntlm_ctx, body)
        self._reply(code, payload, out_ctype)


Callback = Callable[[], None]
