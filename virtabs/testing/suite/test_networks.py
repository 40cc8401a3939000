"""Contract tests of networks (issue 25): listing, lookup by name and id, NICs and attachments, error 43."""

from __future__ import annotations

from collections import Counter

import pytest

from ..._errors import NoNetworkError
from ..._flags import NetworkKind
from ..._models import DomainRecord, NetworkInfo
from ..contract import Contract
from ..markers import requires
from ..target import NotObservable

__all__ = ["TestNetworks"]


def _nics_by_domain(records: list[DomainRecord]) -> dict[str, tuple[tuple[str | None, str | None], ...]]:
    return {r.uuid: tuple((nic.network, nic.mac) for nic in r.nics) for r in records}


class TestNetworks:
    """network: every listed network can be looked up; NICs name listed networks; attachments are the NICs."""

    @requires("network")
    def test_networks_can_be_listed_and_looked_up_by_name_and_id(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        networks = conn.list_networks()
        names = [n.name for n in networks]
        assert len(names) == len(set(names)), f"list_networks has duplicate names: {names}"
        ids = [n.id for n in networks if n.id is not None]
        assert len(ids) == len(set(ids)), f"list_networks has duplicate ids: {ids}"
        assert sorted(n.name for n in virtabs_contract.other_door().list_networks()) == sorted(names)
        for net in networks:
            info = net.last_info
            assert isinstance(info, NetworkInfo) and info.name == net.name and repr(net)
            assert isinstance(net.kind, NetworkKind) and info.kind is net.kind
            assert isinstance(info.native_kind, str) and info.native_kind, f"{net.name!r} has no native_kind"
            found = conn.lookup_network(net.name)
            assert (found.name, found.id, found.kind) == (net.name, net.id, net.kind)
            if net.id is not None:
                by_id = conn.lookup_network(net.id)
                assert (by_id.name, by_id.id) == (net.name, net.id), f"lookup by id {net.id!r} found {by_id.name!r}"
            fresh = net.info()
            assert (fresh.name, fresh.id, fresh.kind, fresh.subnets) == (net.name, net.id, net.kind, info.subnets)

    @requires("network")
    def test_nics_name_listed_networks(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        names = {n.name for n in conn.list_networks()}
        strays = {
            (record.name, nic.network)
            for record in conn.domain_records()
            for nic in record.nics
            if nic.network is not None and nic.network not in names
        }
        # a domain made or removed by someone else between the two reads cannot name a network listed before it
        names |= {n.name for n in conn.list_networks()}
        strays = {(dom, net) for dom, net in strays if net not in names}
        assert not strays, f"NICs name networks list_networks does not return: {sorted(strays)}"

    @requires("network")
    def test_attachments_agree_with_the_domains_nics(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        before = _nics_by_domain(conn.domain_records())
        networks = conn.list_networks()
        after = _nics_by_domain(conn.domain_records())
        steady = {uuid for uuid, nics in before.items() if after.get(uuid) == nics}  # not changed meanwhile
        from_nics = Counter(
            (uuid, network, mac) for uuid in steady for network, mac in before[uuid] if network is not None
        )
        from_networks = Counter(
            (a.domain_uuid, net.name, a.mac)
            for net in networks
            for a in net.last_info.attachments
            if a.domain_uuid in steady
        )
        if not from_nics and not from_networks:  # an empty comparison proves nothing: not a pass
            raise NotObservable("network.attachments: no domain of the target's host has a NIC on a network")
        assert from_networks == from_nics, (
            f"attachments without a NIC: {sorted(from_networks - from_nics)}; "
            f"NICs without an attachment: {sorted(from_nics - from_networks)}"
        )

    @requires("network")
    def test_missing_network_is_no_network_error_43(self, virtabs_contract: Contract) -> None:
        with pytest.raises(NoNetworkError) as exc:
            virtabs_contract.conn.lookup_network("virtabs-contract-no-such-network")
        assert int(exc.value.code) == 43 and "virtabs-contract-no-such-network" in exc.value.message
