"""Inventory: every domain, disk, NIC and pool of many hosts, collected in parallel, nothing lost.

>>> import virtabs.inventory as inv
>>> result = inv.collect(["test:///default"])
>>> result.exit_status, [d.name for _, d in result.domains()]
(0, ['test'])
>>> doc = result.to_dict()          # schema v3, see docs/inventory.md
>>> text = inv.render(result, "csv")  # or json, jsonl, table, ansible

* :func:`collect_stream` yields each host the moment it is done (nothing kept);
  :class:`JsonlWriter` streams them as ``--format jsonl``, :func:`read_blocks` and
  :func:`assemble` read such a stream back (``--resume``, the json document).
* :func:`collect` reads the hosts in parallel (``concurrency``), each bounded by
  its own ``timeout``; a host that fails is reported with its error code and
  message and every other host is still collected.
* :class:`Inventory` holds the result; :meth:`Inventory.to_dict` is the
  schema v3 document (:func:`schema` returns the JSON Schema).
* :func:`render` formats it; :func:`write_atomic` writes a file so that it is
  never seen half-written; :func:`diff` compares two runs.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from ._collect import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    HostTarget,
    collect,
    collect_batch,
    collect_stream,
    host_key,
    plan,
    redact_uri,
)
from ._dask import dask_executor
from ._diff import DEFAULT_IGNORE, InventoryDiff, diff
from ._formats import (
    CSV_COLUMNS,
    FORMATS,
    render,
    to_ansible,
    to_ansible_dict,
    to_csv,
    to_json,
    to_jsonl,
    to_openmetrics,
    to_table,
)
from ._io import load_hosts_file, load_inventory, write_atomic
from ._model import (
    EXIT_ALL_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    SCHEMA_VERSION,
    HostError,
    HostInventory,
    Inventory,
    PoolInventory,
    domain_to_dict,
    sanitize_group,
)
from ._stream import HostBlock, JsonlWriter, assemble, host_lines, read_blocks

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_IGNORE",
    "DEFAULT_TIMEOUT",
    "EXIT_ALL_FAILED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "FORMATS",
    "SCHEMA_VERSION",
    "HostBlock",
    "HostError",
    "HostInventory",
    "HostTarget",
    "Inventory",
    "InventoryDiff",
    "JsonlWriter",
    "PoolInventory",
    "assemble",
    "collect",
    "collect_batch",
    "collect_stream",
    "dask_executor",
    "diff",
    "domain_to_dict",
    "host_key",
    "host_lines",
    "load_hosts_file",
    "load_inventory",
    "plan",
    "read_blocks",
    "redact_uri",
    "render",
    "sanitize_group",
    "schema",
    "to_ansible",
    "to_ansible_dict",
    "to_openmetrics",
    "to_csv",
    "to_json",
    "to_jsonl",
    "to_table",
    "validate",
    "write_atomic",
]


@cache
def _schema_text() -> str:
    return resources.files(__name__).joinpath("schema-v3.json").read_text(encoding="utf-8")


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the inventory document, version 3 (a fresh copy)."""
    result: dict[str, Any] = json.loads(_schema_text())
    return result


def validate(document: Inventory | dict[str, Any]) -> None:
    """Check a document against :func:`schema`; raises ``jsonschema.ValidationError``.

    Needs the ``jsonschema`` package: ``pip install 'virtabs[schema]'``. Without it,
    an ImportError says exactly that, in one line.
    """
    try:
        import jsonschema
    except ImportError:
        raise ImportError(
            "virtabs.inventory.validate() needs jsonschema: pip install 'virtabs[schema]'", name="jsonschema"
        ) from None

    data = document.to_dict() if isinstance(document, Inventory) else document
    jsonschema.validate(data, schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
