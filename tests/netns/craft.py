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
    craft.py spa DST PORT KEY_FILE DOOR [OPTION=VALUE...]
                                  one SPA datagram built here from docs/spa.md (not by the
                                  project's code); prints its hex. Options: age=SECONDS (negative:
                                  from the future), src=ADDR, grant=ADDR, open=PORT/PROTO,
                                  tamper=BYTE_INDEX (flips that byte after signing).
    craft.py raw DST PORT HEX [src=ADDR]
                                  one UDP datagram with exactly these bytes.
    craft.py totp - SECRET_FILE STEP LENGTH FIRST LAST [at=STEP_NUMBER]
                                  prints the step number (now, or the one given) and its TCP
                                  ports, derived as docs/replay.md specifies (not by the
                                  project's code).
    craft.py capture DST PORT COMMAND...
                                  runs COMMAND (no shell) while sniffing; prints the hex payload
                                  of the first UDP datagram it sent to DST:PORT.
"""
import base64
import hashlib
import hmac
import ipaddress
import os
import socket
import subprocess
import sys
import time

from scapy.all import (IP, AsyncSniffer, IPOption_NOP, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
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


def spa_message(key, door, timestamp, nonce, ports, address):
    """Version 1: version, flags, timestamp, nonce, door, ports, [address], HMAC-SHA256."""
    body = bytes([1, 1 if address else 0]) + timestamp.to_bytes(8, "big") + nonce
    body += bytes([len(door)]) + door.encode("ascii") + bytes([len(ports)])
    for proto, port in ports:
        body += bytes([proto]) + port.to_bytes(2, "big")
    if address:
        ip = ipaddress.ip_address(address)
        body += bytes([ip.version]) + ip.packed
    return body + hmac.new(key, body, hashlib.sha256).digest()


def options(args):
    return dict(arg.split("=", 1) for arg in args)


def send_udp(dst, port, payload, src=None):
    src = src or source_for(dst)
    layer = IPv6(src=src, dst=dst) if ":" in dst else IP(src=src, dst=dst)
    send(layer / UDP(sport=40000 + os.getpid() % 20000, dport=port) / Raw(payload))


def spa(dst, port, key_file, door, args):
    opts = options(args)
    with open(key_file, encoding="ascii") as f:
        key = base64.b64decode(f.read().strip())
    ports = []
    if "open" in opts:
        number, proto = opts["open"].split("/")
        ports.append(({"tcp": 6, "udp": 17}[proto], int(number)))
    timestamp = int(time.time()) - int(opts.get("age", "0"))
    message = bytearray(spa_message(key, door, timestamp, os.urandom(16), ports, opts.get("grant")))
    if "tamper" in opts:
        message[int(opts["tamper"])] ^= 0x01
    send_udp(dst, port, bytes(message), opts.get("src"))
    print(message.hex(), flush=True)


def totp(secret_file, step_seconds, length, first, last, args):
    with open(secret_file, encoding="ascii") as f:
        secret = base64.b64decode(f.read().strip())
    step = int(options(args).get("at", int(time.time()) // step_seconds))
    span, chosen = last - first + 1, []
    for counter in range(256):
        digest = hmac.new(secret, step.to_bytes(8, "big") + bytes([counter]), hashlib.sha256).digest()
        for i in range(0, 32, 4):
            port = first + int.from_bytes(digest[i:i + 4], "big") % span
            if port not in chosen:
                chosen.append(port)
            if len(chosen) == length:
                print(step, *chosen, flush=True)
                return


def capture(dst, port, command):
    def wanted(p):
        return UDP in p and p[UDP].dport == port and (p.haslayer(IP) and p[IP].dst == dst
                                                      or p.haslayer(IPv6) and p[IPv6].dst == dst)
    sniffer = AsyncSniffer(iface=conf.route.route(dst)[0] if ":" not in dst
                           else conf.route6.route(dst)[0], lfilter=wanted, count=1, timeout=10)
    sniffer.start()
    time.sleep(0.5)  # the socket must be open before the datagram leaves
    subprocess.run(command, check=True)
    sniffer.join()
    packets = sniffer.results or []
    if not packets:
        raise SystemExit(f"no datagram to {dst}:{port} seen")
    print(bytes(packets[0][UDP].payload).hex(), flush=True)


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
    elif command == "spa":
        spa(dst, int(rest[0]), rest[1], rest[2], rest[3:])
    elif command == "raw":
        send_udp(dst, int(rest[0]), bytes.fromhex(rest[1]), options(rest[2:]).get("src"))
    elif command == "totp":
        totp(rest[0], *(int(x) for x in rest[1:5]), rest[5:])
    elif command == "capture":
        capture(dst, int(rest[0]), rest[1:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
