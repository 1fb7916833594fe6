#!/usr/bin/env python3
"""IPv6 TCP SYNs behind extension headers, sent and seen as raw frames (runs inside a pod's namespace).

  send IFACE GW_MAC SRC DST DPORT SPORT CHAIN [COUNT]
      sends COUNT (default 3) SYNs from SRC:SPORT to DST:DPORT on IFACE to the gateway's MAC, behind CHAIN:
      a comma list of none | hbh | dst | rt | frag (hop-by-hop options with PadN, destination options with PadN,
      routing header type 0 with no segments left, fragment header: first fragment, more to come).
  listen IFACE SRC
      prints "SPORT DPORT CHAIN" for each IPv6 TCP SYN from SRC seen on IFACE (an AF_PACKET socket: what reached
      the interface, before the pod's own stack decides anything); stderr "listening" once ready.

The standard library only (no scapy): the headers are built by hand, the TCP checksum over the IPv6 pseudo-header.
"""
import socket
import struct
import sys
import time

ETH_P_IPV6 = 0x86DD
ETH_P_ALL = 0x0003
NAMES = {0: 'hbh', 60: 'dst', 43: 'rt', 44: 'frag'}
CODES = {v: k for k, v in NAMES.items()}


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    tcp = struct.pack('!HHIIBBHHH', sport, dport, 0x1000, 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = src + dst + struct.pack('!IxxxB', len(tcp), 6)
    c = checksum(pseudo + tcp)
    return tcp[:16] + struct.pack('!H', c) + tcp[18:]


def ext(code: int, nxt: int) -> bytes:
    if code in (0, 60):  # options: next header, length 0 (8 bytes), PadN of 4 bytes
        return bytes([nxt, 0, 1, 4, 0, 0, 0, 0])
    if code == 43:  # routing type 0, segments left 0, reserved
        return bytes([nxt, 0, 0, 0, 0, 0, 0, 0])
    if code == 44:  # fragment: offset 0, M = 1, identification
        return struct.pack('!BBHI', nxt, 0, 0x0001, 0x5157AA01)
    raise ValueError(code)


def packet(src: str, dst: str, sport: int, dport: int, chain: list) -> bytes:
    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    payload = syn(s, d, sport, dport)
    nxt = 6
    for name in reversed(chain):
        payload = ext(CODES[name], nxt) + payload
        nxt = CODES[name]
    return struct.pack('!IHBB', 6 << 28, len(payload), nxt, 64) + s + d + payload


def send(iface, mac, src, dst, dport, sport, chain, count=3):
    names = [c for c in chain.split(',') if c != 'none']
    frame_dst = bytes.fromhex(mac.replace(':', ''))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6))
    for _ in range(int(count)):
        sock.sendto(packet(src, dst, int(sport), int(dport), names), (iface, ETH_P_IPV6, 0, 0, frame_dst))
        time.sleep(0.05)


def listen(iface, src):
    want = socket.inet_pton(socket.AF_INET6, src)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    sys.stderr.write('listening\n')
    sys.stderr.flush()
    while True:
        frame = sock.recv(65535)
        if len(frame) < 54 or struct.unpack('!H', frame[12:14])[0] != ETH_P_IPV6:
            continue
        ip = frame[14:]
        if ip[8:24] != want:
            continue
        nxt, off, chain = ip[6], 40, []
        while nxt in NAMES and off + 8 <= len(ip):
            chain.append(NAMES[nxt])
            hdr_len = 8 if nxt == 44 else (ip[off + 1] + 1) * 8
            nxt, off = ip[off], off + hdr_len
        if nxt != 6 or off + 14 > len(ip) or not (ip[off + 13] & 0x02):
            continue
        sport, dport = struct.unpack('!HH', ip[off:off + 4])
        print(sport, dport, ','.join(chain) or 'none', flush=True)


if __name__ == '__main__':
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == 'send':
        send(*args)
    elif mode == 'listen':
        listen(*args)
    else:
        sys.exit('usage: rawsyn6.py send|listen ...')
