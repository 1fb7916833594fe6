// A hostile mesh node for tests: runs the real engine in mesh mode with a
// stolen node key, but with its own ipcache, so it tags its pods' packets
// with an identity of another cluster (forged). Packets whose source address
// is outside the node's pod CIDR go out as they are (spoofed).
//   node rogue-node.mjs KEYFILE TUN PEER_PUBKEY PEER_HOST:PORT PEER_CIDR POD_IP FORGED_IDENTITY
// Prints "ready" once the peer is configured; runs until killed.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { WireGuardDevice } from '../../dist/src/wireguard/device.js';
import { parseIP, parsePrefix } from '../../dist/src/net/ip.js';
import { ipcacheRow } from '../../dist/src/native/rows.js';

const [keyFile, tun, peerKey, peerEp, peerCidr, podIp, forged] = process.argv.slice(2);
const dev = new WireGuardDevice({ tunName: tun, listenPort: 51820, mtu: 1412 });
dev.setPrivateKey(Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64'));
const peer = dev.addPeer(Buffer.from(peerKey, 'base64'));
const [host, port] = peerEp.split(':');
dev.setPeerEndpoint(peer, { host, port: Number(port) });
dev.setPeerAllowedIPs(peer, [parsePrefix(peerCidr)]);
dev.native.enablePolicy();
dev.native.setPeerIdentity(peer.id, true, 2, []);
const addr = parseIP(podIp);
dev.native.ipcacheUpdate(ipcacheRow(addr, addr.length * 8, Number(forged), 0), Buffer.alloc(0));
execFileSync('ip', ['link', 'set', tun, 'up']);
execFileSync('ip', ['route', 'replace', peerCidr, 'dev', tun]);
process.stdout.write('ready\n');
setInterval(() => {}, 1 << 30);
