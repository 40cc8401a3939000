"""wsman_sim: a WS-Management host simulator for the virtabs Hyper-V backend. TEST INFRASTRUCTURE ONLY.

Hyper-V cannot run on Linux and no WS-Management server is packaged for Debian, so the backend's tests
talk to this: a real HTTP(S) WS-Man endpoint on 127.0.0.1 that pywinrm drives exactly as it drives
Windows (SOAP 1.2, the WinRM remote shell: Create, Command, Receive, Signal, Delete), running the
``powershell -EncodedCommand`` scripts the backend sends through an interpreter of the PowerShell subset
the backend uses, against an in-memory Hyper-V host model. Unknown cmdlets or parameters fail as
PowerShell fails (CLIXML on stderr, exit code 1), so a typo in a backend script fails a test.

It lives under ``backends/hyperv/tests/`` and is shipped inside the ``virtabs-hyperv`` wheel as the
separate top-level package ``virtabs_hyperv_sim`` only so that the published contract target can start it
from an installed wheel. It stands in for no feature of the driver, and nothing in it was checked against
a real Windows host: where its behaviour is a guess, the docs (``docs/drivers/hyperv.md``) say so.

    >>> with Simulator() as sim:                                      # doctest: +SKIP
    ...     winrm.Session(sim.url, auth=(sim.username, sim.password), transport="ssl",
    ...                   ca_trust_path=str(sim.cafile)).run_ps("Hyper-V\\Get-VM | ConvertTo-Json")
"""

from __future__ import annotations

import secrets
import shutil
import ssl
import tempfile
from pathlib import Path
from types import TracebackType

from ._host import HyperVHost, build_commands, link_hosts, seed_demo
from ._pki import make_pki
from ._server import WSManServer

__all__ = ["HyperVHost", "Simulator", "link_hosts", "seed_demo"]


class Simulator:
    """A running simulator: ``tls=True`` serves HTTPS with a throw-away CA (``cafile``), else plain HTTP.

    ``port`` 0 picks a free port; ``cafile`` copies the CA certificate to that path too.
    ``ntlm=True`` (HTTP only) accepts NTLM with SPNEGO message encryption instead of Basic.
    """

    def __init__(
        self,
        *,
        tls: bool = True,
        ntlm: bool = False,
        allow_unencrypted: bool = False,
        username: str = "virtabs",
        password: str | None = None,
        host: HyperVHost | None = None,
        port: int = 0,
        cafile: Path | None = None,
    ) -> None:
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.host = host if host is not None else HyperVHost()
        self.dir = Path(tempfile.mkdtemp(prefix="wsman-sim-"))
        self.cafile: Path | None = None
        ctx = None
        if tls:
            self.cafile, cert, key = make_pki(self.dir)
            if cafile is not None:  # the CA certificate where the client was told to find it
                cafile.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.cafile, cafile)
                self.cafile = cafile
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
        self.server = WSManServer(
            build_commands(self.host),
            username=username,
            password=self.password,
            tls=ctx,
            allow_unencrypted=allow_unencrypted,
            ntlm=ntlm,
            port=port,
            state_dir=self.dir,
        )

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:PORT/wsman``."""
        return self.server.url

    @property
    def port(self) -> int:
        """The TCP port."""
        return self.server.port

    def start(self) -> Simulator:
        """Serve in a daemon thread."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the temporary directory (certificates)."""
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
