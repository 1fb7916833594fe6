/** Reads UDP payloads out of a classic pcap file (Ethernet link type, IPv4/IPv6). */
export function readPcapUdpPayloads(file: Buffer): Buffer[] {
  const out: Buffer[] = [];
  if (file.length < 24) return out;
  const le = file.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number) => (le ? file.readUInt32LE(o) : file.readUInt32BE(o));
  let off = 24;
  while (off + 16 <= file.length) {
    const incl = u32(off + 8);
    const frame = file.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    if (frame.length < 14) continue;
    const ethType = frame.readUInt16BE(12);
    let ip = frame.subarray(14);
    let udp: Buffer | undefined;
    if (ethType === 0x0800 && ip[9] === 17) udp = ip.subarray((ip[0]! & 0x0f) * 4);
    else if (ethType === 0x86dd && ip[6] === 17) udp = ip.subarray(40);
    if (!udp || udp.length < 8) continue;
    out.push(Buffer.from(udp.subarray(8, udp.readUInt16BE(4))));
    ip = Buffer.alloc(0);
  }
  return out;
}
