"""Run the simulator in the foreground (test infrastructure): ``python -m virtabs_hyperv_sim --vms 200``.

Prints one JSON line (url, port, username, password, cafile) on stdout, then serves until stdin closes
or the process is signalled.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import Simulator, seed_demo


def main() -> None:
    """Entry point."""
    ap = argparse.ArgumentParser(prog="virtabs_hyperv_sim")
    ap.add_argument("--http", action="store_true", help="plain HTTP (Basic allowed unencrypted)")
    ap.add_argument("--ntlm", action="store_true", help="NTLM with message encryption (HTTP)")
    ap.add_argument("--vms", type=int, default=0, help="seed this many demo VMs")
    ap.add_argument("--port", type=int, default=0)
    ns = ap.parse_args()
    sim = Simulator(tls=not (ns.http or ns.ntlm), ntlm=ns.ntlm, allow_unencrypted=ns.http, port=ns.port)
    seed_demo(sim.host, ns.vms)
    sim.start()
    info = {
        "url": sim.url,
        "port": sim.port,
        "username": sim.username,
        "password": sim.password,
        "cafile": str(sim.cafile) if sim.cafile else None,
    }
    print(json.dumps(info), flush=True)
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
