#!/usr/bin/python3
"""Crafted packets for the netns tests (scapy; run inside the client namespace).

    craft.py seq DST SPEC...      send packets in order, 50 ms apart. SPEC is
                                  tcp:PORT:FLAGS (scapy flags: S, SA, A, F...), udp:PORT,
                                  tcpx:PORT:FLAGS (IPv6 only: with hop-by-hop, destination
                                  options and routing extension headers before TCP),
                                  tcpo:PORT:FLAGS (IPv4 only: with IP options).
    craft.py malformed DST PORT   a burst of broken packets aimed at a knock port.
    craft.py probe DST PORT...    one SYN per port; prints "PORT answered" or "PORT silent".
    craft.py spoofed DST COUNT SPEC...
                                  the SPEC sequence (tcp:PORT:FLAGS, udp:PORT) from each of COUNT
                                  forged sources 10.64.0.1, 10.64.0.2, ... (IPv4 DST only), each
                                  source's knocks back to back; prints the seconds it took.
"""
import socket
import sys
import time

from scapy.all import (IP, IPOption_NOP, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                       IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, TCP, UDP, Raw, conf, fragment,
                       send, sr1)

conf.verb = 0


def source_for(dst):
    """The address the kernel sends from. scapy picks its own and ignores that the second client
    address is deprecated (preferred_lft 0), so it sometimes knocked from the wrong address."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((dst, 9))  # UDP connect: a route lookup, no packet
        return s.getsockname()[0]


def ip_layer(dst, **kw):
    src = source_for(dst)
    return IPv6(src=src, dst=dst, **kw) if ":" in dst else IP(src=src, dst=dst, **kw)


def packet(dst, spec):
    kind, port, *rest = spec.split(":")
    port = int(port)
    flags = rest[0] if rest else "S"
    sport = 40000 + (hash(spec) % 20000)
    if kind == "tcp":
        return ip_layer(dst) / TCP(sport=sport, dport=port, flags=flags)
    if kind == "udp":
        return ip_layer(dst) / UDP(sport=sport, dport=port) / Raw(b"knock")
    if kind == "tcpx":
        return (ip_layer(dst) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                / IPv6ExtHdrRouting(addresses=[]) / TCP(sport=sport, dport=port, flags=flags))
    if kind == "tcpo":
        return ip_layer(dst, options=[IPOption_NOP()] * 4) / TCP(sport=sport, dport=port, flags=flags)
    raise SystemExit(f"unknown packet spec {spec}")


def seq(dst, specs):
    for spec in specs:
        send(packet(dst, spec))
        time.sleep(0.05)


def malformed(dst, port):
    """Packets a scanner or a broken stack sends: each must leave the daemon alive."""
    v6 = ":" in dst
    burst = []
    if v6:
        burst += [
            IPv6(dst=dst, plen=4) / TCP(dport=port, flags="S"),              # length cuts TCP
            IPv6(dst=dst) / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / TCP(dport=port, flags="S"),
            IPv6(dst=dst) / IPv6ExtHdrFragment(m=1, offset=0, id=7) / TCP(dport=port, flags="S"),
            IPv6(dst=dst, nh=6) / Raw(b"\x00" * 7),                            # 7-byte "TCP"
            IPv6(dst=dst) / IPv6ExtHdrHopByHop(nh=59) / Raw(b"x" * 30),       # no next header
        ]
    else:
        syn = IP(dst=dst) / TCP(dport=port, flags="S") / Raw(b"A" * 200)
        burst += [
            IP(dst=dst, ihl=15) / TCP(dport=port, flags="S"),                # IHL beyond data
            IP(dst=dst, len=24) / TCP(dport=port, flags="S"),                # total length cuts TCP
            IP(dst=dst, options=[IPOption_NOP()] * 8) / TCP(dport=port, flags="S"),
            IP(dst=dst, proto=6) / Raw(b"\x00" * 5),                           # 5-byte "TCP"
            IP(dst=dst) / TCP(dport=port, flags="S", dataofs=15),            # options beyond data
            IP(dst=dst) / UDP(dport=port, len=3) / Raw(b"zz"),               # bogus UDP length
        ]
        burst += fragment(syn, fragsize=16)                                  # a fragmented SYN
        burst += fragment(syn, fragsize=16)[1:]                              # fragments, no head
    for _ in range(5):
        for p in burst:
            send(p)


def probe(dst, ports):
    for port in ports:
        reply = sr1(ip_layer(dst) / TCP(sport=45000, dport=int(port), flags="S"), timeout=1)
        print(f"{port} {'answered' if reply is not None else 'silent'}", flush=True)


def spoofed(dst, count, specs):
    burst = []
    for i in range(1, count + 1):
        src = f"10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"
        for spec in specs:
            kind, port, *rest = spec.split(":")
            if kind == "tcp":
                layer = TCP(sport=40000 + i % 20000, dport=int(port), flags=rest[0] if rest else "S")
            else:
                layer = UDP(sport=40000 + i % 20000, dport=int(port)) / Raw(b"knock")
            burst.append(IP(src=src, dst=dst) / layer)
    started = time.monotonic()
    send(burst)
    print(f"{time.monotonic() - started:.2f}", flush=True)


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    command, dst, rest = argv[1], argv[2], argv[3:]
    if command == "seq":
        seq(dst, rest)
    elif command == "malformed":
        malformed(dst, int(rest[0]))
    elif command == "probe":
        probe(dst, rest)
    elif command == "spoofed":
        spoofed(dst, int(rest[0]), rest[1:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
