#!/bin/sh
# Captures captured/*.json: the real output of this machine's iproute2 (6.1.0, Debian 12) in a throwaway
# network namespace holding what a Linux hypervisor host has: a bridge with IPv4 and IPv6 addresses and a
# veth and a tap in it (libvirt's virbr0 with guests' vnetN), an empty bridge that is down, a tap on no
# bridge, and a macvlan. Run as root or with unprivileged user namespaces:
#     unshare -rn sh tests/linux_net/capture.sh tests/linux_net/captured
# (this kernel has no bridge VLAN filtering nor 802.1Q, so no VLAN appears here).
set -eu
out=$1
ip link set lo up
ip link add virbr7 type bridge
ip link set virbr7 address 52:54:00:7a:00:01
ip addr add 192.168.150.1/24 dev virbr7
ip addr add fd00:150::1/64 dev virbr7 nodad
ip link set virbr7 up
ip link add vnet7 type veth peer name vnet7-guest
ip link set vnet7 address fe:54:00:11:22:33
ip link set vnet7 master virbr7
ip tuntap add vnet8 mode tap
ip link set vnet8 address fe:54:00:44:55:66
ip link set vnet8 master virbr7
ip link add lxcbr1 type bridge
ip tuntap add tap-loose mode tap
ip link add mv-guest link virbr7 type macvlan mode bridge
ip -json -details link show >"$out/ip-json-details-link-show.json"
ip -json addr show >"$out/ip-json-addr-show.json"
