"""Comparing two inventories: what appeared, vanished or changed."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._model import Inventory

__all__ = ["DEFAULT_IGNORE", "InventoryDiff", "diff"]

DEFAULT_IGNORE: tuple[str, ...] = ("extra.cpu_time_ns", "block_jobs.*.cur")
"""Domain fields that change on every run and are left out of ``changed`` unless asked for."""

_HOST_IGNORE = ("collected_at", "field_errors*")
_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "disks": ("target",),
    "nics": ("mac",),
    "block_jobs": ("disk",),
    "networks": ("name",),
    "subnets": ("cidr",),
    # a MAC is unique within a domain, not across domains (vcsim gives several VMs one MAC; clones can share
    # one): an attachment is its domain's NIC, so it is keyed by the domain's uuid and the MAC
    "attachments": ("domain_uuid", "mac"),
}
"""How the items of a list field are matched between two runs: by the values of these fields it has, joined
with ``/`` (``networks.dmz.attachments.UUID/MAC``); an item with none of them by its index."""


def _doc(value: Inventory | Mapping[str, Any]) -> Mapping[str, Any]:
    return value.to_dict() if isinstance(value, Inventory) else value


def _keyed(name: str, items: list[Any]) -> dict[str, Any]:
    keys = _LIST_KEYS.get(name, ())
    result: dict[str, Any] = {}
    for index, item in enumerate(items):
        parts = [str(item[k]) for k in keys if isinstance(item, Mapping) and item.get(k) is not None]
        label = "/".join(parts) if parts else str(index)
        while label in result:
            label += "'"
        result[label] = item
    return result


def _compare(old: Any, new: Any, path: str, out: list[dict[str, Any]]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in new:
                out.append({"field": sub, "change": "removed", "old": old[key], "new": None})
            elif key not in old:
                out.append({"field": sub, "change": "added", "old": None, "new": new[key]})
            else:
                _compare(old[key], new[key], sub, out)
        return
    name = path.rsplit(".", 1)[-1]
    if (
        name in _LIST_KEYS
        and isinstance(old, list)
        and isinstance(new, list)
        and all(isinstance(x, Mapping) for x in old + new)
    ):
        _compare(_keyed(name, old), _keyed(name, new), path, out)
        return
    if old != new:
        out.append({"field": path, "change": "modified", "old": old, "new": new})


def _ignored(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _ref(uri: str, dom: Mapping[str, Any]) -> dict[str, Any]:
    return {"host_uri": uri, "uuid": dom["uuid"], "name": dom["name"]}


@attrs.frozen
class InventoryDiff:
    """The differences between two inventories, domains keyed by ``(host uri, uuid)``.

    * ``appeared`` / ``vanished``: ``{"host_uri", "uuid", "name"}`` of domains
      found only in the new / only in the old run;
    * ``changed``: those plus ``"changes"``, a list of
      ``{"field", "change": "added"|"removed"|"modified", "old", "new"}`` with
      dotted field paths (``state``, ``disks.vda.capacity_bytes``);
    * ``moved``: domains (by uuid) that vanished from one host and appeared on
      another; they are also listed in ``appeared`` and ``vanished``;
    * ``hosts_appeared`` / ``hosts_vanished``: host URIs in only one run;
      ``hosts_changed``: host fields that changed (hypervisor version, memory...), networks included
      (``networks.dmz`` added or removed, ``networks.dmz.vlan_ids`` modified; compared only when both
      documents have networks, so a schema version 1 document against a later one reports none);
    * ``hosts_unknown``: hosts that failed in either run, one entry per distinct host
      (``"run"``: ``"old"``, ``"new"`` or ``"both"``; the newest error); their
      domains are neither appeared nor vanished (nothing is known about them).
    """

    old_generated_at: str | None
    new_generated_at: str | None
    appeared: tuple[dict[str, Any], ...] = ()
    vanished: tuple[dict[str, Any], ...] = ()
    changed: tuple[dict[str, Any], ...] = ()
    moved: tuple[dict[str, Any], ...] = ()
    hosts_appeared: tuple[str, ...] = ()
    hosts_vanished: tuple[str, ...] = ()
    hosts_changed: tuple[dict[str, Any], ...] = ()
    hosts_unknown: tuple[dict[str, Any], ...] = ()

    @property
    def has_changes(self) -> bool:
        """True when anything appeared, vanished or changed (failed hosts alone do not count)."""
        return bool(
            self.appeared
            or self.vanished
            or self.changed
            or self.hosts_appeared
            or self.hosts_vanished
            or self.hosts_changed
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what ``--diff --format json`` writes)."""
        return {
            "old_generated_at": self.old_generated_at,
            "new_generated_at": self.new_generated_at,
            "summary": {
                "appeared": len(self.appeared),
                "vanished": len(self.vanished),
                "changed": len(self.changed),
                "moved": len(self.moved),
                "hosts_appeared": len(self.hosts_appeared),
                "hosts_vanished": len(self.hosts_vanished),
                "hosts_changed": len(self.hosts_changed),
                "hosts_unknown": len(self.hosts_unknown),
            },
            "appeared": list(self.appeared),
            "vanished": list(self.vanished),
            "changed": list(self.changed),
            "moved": list(self.moved),
            "hosts_appeared": list(self.hosts_appeared),
            "hosts_vanished": list(self.hosts_vanished),
            "hosts_changed": list(self.hosts_changed),
            "hosts_unknown": list(self.hosts_unknown),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_jsonl(self) -> str:
        """One JSON object per domain or host event, each with a ``"kind"``."""
        lines = []
        for kind in (
            "appeared",
            "vanished",
            "changed",
            "moved",
            "hosts_appeared",
            "hosts_vanished",
            "hosts_changed",
            "hosts_unknown",
        ):
            for item in getattr(self, kind):
                obj = {"kind": kind, **item} if isinstance(item, Mapping) else {"kind": kind, "host_uri": item}
                lines.append(json.dumps(obj, ensure_ascii=False) + "\n")
        return "".join(lines)

    def to_text(self) -> str:
        """A human-readable report: ``+`` appeared, ``-`` vanished, ``~`` changed, ``?`` unknown."""
        lines = [f"inventory diff: {self.old_generated_at} -> {self.new_generated_at}"]
        for uri in self.hosts_appeared:
            lines.append(f"+ host {uri}")
        for uri in self.hosts_vanished:
            lines.append(f"- host {uri}")
        for item in self.hosts_unknown:
            runs = "both runs" if item["run"] == "both" else f"the {item['run']} run"
            lines.append(f"? host {item['host_uri']}: failed in {runs} ({item['error']})")
        for item in self.hosts_changed:
            for c in item["changes"]:
                lines.append(f"~ host {item['host_uri']}: {c['field']}: {_short(c['old'])} -> {_short(c['new'])}")
        for item in self.appeared:
            lines.append(f"+ {item['name']} ({item['uuid']}) on {item['host_uri']}")
        for item in self.vanished:
            lines.append(f"- {item['name']} ({item['uuid']}) on {item['host_uri']}")
        for item in self.moved:
            lines.append(f"> {item['name']} ({item['uuid']}) moved {item['from_host_uri']} -> {item['to_host_uri']}")
        for item in self.changed:
            lines.append(f"~ {item['name']} ({item['uuid']}) on {item['host_uri']}")
            for c in item["changes"]:
                lines.append(f"    {c['field']}: {_short(c['old'])} -> {_short(c['new'])}")
        if not self.has_changes:
            lines.append("no differences")
        return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def diff(
    old: Inventory | Mapping[str, Any],
    new: Inventory | Mapping[str, Any],
    *,
    ignore: Iterable[str] = DEFAULT_IGNORE,
) -> InventoryDiff:
    """Compare two inventories (objects or schema v1, v2 or v3 documents, e.g. from :func:`load_inventory`).

    ``ignore`` holds glob patterns of dotted domain field paths left out of
    ``changed`` (default :data:`DEFAULT_IGNORE`: counters that move on every run).
    """
    patterns = tuple(ignore)
    old_doc, new_doc = _doc(old), _doc(new)
    old_hosts = {h["uri"]: h for h in old_doc["hosts"]}
    new_hosts = {h["uri"]: h for h in new_doc["hosts"]}
    appeared: list[dict[str, Any]] = []
    vanished: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    hosts_changed: list[dict[str, Any]] = []
    unknown: list[dict[str, Any]] = []
    failed_in: dict[str, list[str]] = {}  # one entry per distinct host, however many runs it failed in
    errors: dict[str, str] = {}
    for run, hosts in (("old", old_hosts), ("new", new_hosts)):
        for uri, host in hosts.items():
            if host.get("error") is not None:
                err = host["error"]
                failed_in.setdefault(uri, []).append(run)
                errors[uri] = f"{err['code_name']}: {err['message']}"  # the newest run's error wins
    for uri, runs in failed_in.items():
        unknown.append({"host_uri": uri, "run": "both" if len(runs) == 2 else runs[0], "error": errors[uri]})
    for uri in [u for u in new_hosts if u in old_hosts]:
        before, after = old_hosts[uri], new_hosts[uri]
        if before.get("error") is not None or after.get("error") is not None:
            continue
        host_changes: list[dict[str, Any]] = []
        strip: tuple[str, ...] = ("domains", "pools", "error")
        if "networks" not in before or "networks" not in after:
            strip += ("networks",)
        _compare(
            {k: v for k, v in before.items() if k not in strip},
            {k: v for k, v in after.items() if k not in strip},
            "",
            host_changes,
        )
        host_changes = [c for c in host_changes if not _ignored(c["field"], _HOST_IGNORE)]
        if host_changes:
            hosts_changed.append({"host_uri": uri, "changes": host_changes})
        old_doms = {d["uuid"]: d for d in before["domains"]}
        new_doms = {d["uuid"]: d for d in after["domains"]}
        for uuid, dom in new_doms.items():
            if uuid not in old_doms:
                appeared.append(_ref(uri, dom))
                continue
            changes: list[dict[str, Any]] = []
            _compare(old_doms[uuid], dom, "", changes)
            changes = [c for c in changes if not _ignored(c["field"], patterns)]
            if changes:
                changed.append({**_ref(uri, dom), "changes": changes})
        vanished.extend(_ref(uri, d) for u, d in old_doms.items() if u not in new_doms)
    for uri in new_hosts.keys() - old_hosts.keys():
        appeared.extend(_ref(uri, d) for d in new_hosts[uri]["domains"])
    for uri in old_hosts.keys() - new_hosts.keys():
        vanished.extend(_ref(uri, d) for d in old_hosts[uri]["domains"])
    gone = {v["uuid"]: v for v in vanished}
    moved = [
        {
            "uuid": a["uuid"],
            "name": a["name"],
            "from_host_uri": gone[a["uuid"]]["host_uri"],
            "to_host_uri": a["host_uri"],
        }
        for a in appeared
        if a["uuid"] in gone and gone[a["uuid"]]["host_uri"] != a["host_uri"]
    ]
    return InventoryDiff(
        old_generated_at=old_doc.get("generated_at"),
        new_generated_at=new_doc.get("generated_at"),
        appeared=tuple(appeared),
        vanished=tuple(vanished),
        changed=tuple(changed),
        moved=tuple(moved),
        hosts_appeared=tuple(u for u in new_hosts if u not in old_hosts),
        hosts_vanished=tuple(u for u in old_hosts if u not in new_hosts),
        hosts_changed=tuple(hosts_changed),
        hosts_unknown=tuple(unknown),
    )
