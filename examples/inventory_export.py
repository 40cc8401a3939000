"""Inventory to Ansible and CSV (and OpenMetrics) with the Python API.

    .venv/bin/python examples/inventory_export.py [OUTDIR] [URI ...]     # default: test:///default

Writes OUTDIR/inventory.json (Ansible's JSON inventory, usable as ``ansible-inventory -i``
with a script or as a static file), OUTDIR/hosts.csv and OUTDIR/virtabs.prom. A host that
fails does not stop the others: it is reported with its error code.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import virtabs.inventory as inv


def main(outdir: Path, uris: list[str]) -> int:
    """Collect ``uris`` once and write the three formats; return the inventory's exit status."""
    result = inv.collect(uris or ["test:///default"])
    for name, fmt in (("inventory.json", "ansible"), ("hosts.csv", "csv"), ("virtabs.prom", "openmetrics")):
        path = outdir / name
        path.write_text(inv.render(result, fmt))
        print(f"wrote {path.name}: {len(path.read_text().splitlines())} lines ({fmt})")
    summary = result.summary()
    print(f"{summary['hosts_ok']}/{summary['hosts']} hosts ok, {summary['domains']} domains")
    for host in result.failed_hosts:
        assert host.error is not None
        print(f"failed: {host.uri}: {host.error.code_name} ({host.error.code}) {host.error.message}")
    return result.exit_status


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp), []))
