/**
 * The cross-platform userspace API (wireguard.com/xplatform) on a UNIX socket,
 * so stock `wg` and `wg-quick` manage the device.
 *
 * A `set` request is parsed and validated in full before anything changes: a bad
 * request is answered with its errno and leaves the device as it was (wireguard-go
 * applies lines as it reads them; we do not).
 */
import { existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { listenPrivate } from '../net/listen.js';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { ConfigError, HostError, UAPI_EADDRINUSE, UAPI_EINVAL, UAPI_EIO, UAPI_EPROTO, UapiError } from '../errors.js';
import { formatEndpoint, formatPrefix, parseEndpoint, parsePrefix, type Prefix } from '../net/ip.js';
import type { WireGuardDevice } from './device.js';
import { keyFromHex } from './keys.js';
import type { Endpoint } from './peer.js';

export const SOCKET_DIR = '/var/run/wireguard';

/**
 * The largest request a connection may send, in characters (UTF-8 decoded): 16 MiB, about 700,000
 * `allowed_ip=` lines. wireguard-go sets none; a `wg setconf` of 100,000 allowed IPs is ~2.3 MB and was
 * cut at the former 1 MiB. Past it the connection is closed without an answer.
 */
export const MAX_REQUEST_CHARS = 16 << 20;
/** UAPI connections served at once (wg, wg-quick use one at a time); more are closed at accept. */
export const MAX_UAPI_CONNECTIONS = 4;

// errno values and UapiError live in the error catalogue; exported here too, where the socket uses them.
export { UAPI_EADDRINUSE, UAPI_EINVAL, UAPI_EIO, UAPI_EPROTO, UapiError };

interface PeerOps {
  publicKey: Buffer;
  remove: boolean;
  updateOnly: boolean;
  presharedKey?: Buffer;
  endpoint?: Endpoint;
  persistentKeepalive?: number;
  replaceAllowedIPs: boolean;
  allowedIPs: Prefix[];
}

export interface SetPlan {
  privateKey?: Buffer;
  listenPort?: number;
  fwmark?: number;
  replacePeers: boolean;
  peers: PeerOps[];
}

function parseBool(key: string, value: string): boolean {
  if (value !== 'true') throw new UapiError(UAPI_EINVAL, `${key}: expected "true", got "${value}"`);
  return true;
}

function parseUint(key: string, value: string, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) > max) throw new UapiError(UAPI_EINVAL, `${key}: "${value}" is not an integer in 0..${max}`);
  return Number(value);
}

function wrap<T>(key: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ConfigError) throw new UapiError(UAPI_EINVAL, `${key}: ${err.message}`);
    throw err;
  }
}

/** Parses the key=value lines of a set request (without "set=1" and the blank line). */
export function parseSet(lines: string[]): SetPlan {
  const plan: SetPlan = { replacePeers: false, peers: [] };
  let peer: PeerOps | undefined;
  for (const line of lines) {
    const eq = line.indexOf('=');
    if (eq < 0) throw new UapiError(UAPI_EPROTO, `line "${line}" has no "="`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (!peer) {
      switch (key) {
        case 'private_key':
          plan.privateKey = wrap(key, () => keyFromHex(value, key));
          continue;
        case 'listen_port':
          plan.listenPort = parseUint(key, value, 65535);
          continue;
        case 'fwmark':
          plan.fwmark = value === '' ? 0 : parseUint(key, value, 0xffffffff);
          continue;
        case 'replace_peers':
          plan.replacePeers = parseBool(key, value);
          continue;
        case 'public_key':
          break;
        default:
          throw new UapiError(UAPI_EINVAL, `invalid UAPI device key "${key}"`);
      }
    }
    switch (key) {
      case 'public_key':
        peer = { publicKey: wrap(key, () => keyFromHex(value, key)), remove: false, updateOnly: false, replaceAllowedIPs: false, allowedIPs: [] };
        plan.peers.push(peer);
        break;
      case 'remove':
        peer!.remove = parseBool(key, value);
        break;
      case 'update_only':
        peer!.updateOnly = parseBool(key, value);
        break;
      case 'preshared_key':
        peer!.presharedKey = wrap(key, () => keyFromHex(value, key));
        break;
      case 'endpoint':
        peer!.endpoint = wrap(key, () => parseEndpoint(value, key));
        break;
      case 'persistent_keepalive_interval':
        peer!.persistentKeepalive = parseUint(key, value, 65535);
        break;
      case 'replace_allowed_ips':
        peer!.replaceAllowedIPs = parseBool(key, value);
        break;
      case 'allowed_ip':
        peer!.allowedIPs.push(wrap(key, () => parsePrefix(value, key)));
        break;
      case 'protocol_version':
        if (value !== '1') throw new UapiError(UAPI_EINVAL, `protocol_version: unsupported version "${value}"`);
        break;
      default:
        throw new UapiError(UAPI_EINVAL, `invalid UAPI peer key "${key}"`);
    }
  }
  return plan;
}

/** Applies a validated plan. The port is bound first: the only step that can fail. */
export function applySet(dev: WireGuardDevice, plan: SetPlan): void {
  if (plan.listenPort !== undefined) {
    try {
      dev.setListenPort(plan.listenPort);
    } catch (err) {
      throw new UapiError(UAPI_EADDRINUSE, (err as Error).message);
    }
  }
  if (plan.privateKey) dev.setPrivateKey(plan.privateKey);
  if (plan.fwmark !== undefined) dev.setFwmark(plan.fwmark);
  if (plan.replacePeers) dev.removeAllPeers();
  for (const ops of plan.peers) {
    if (dev.identity && ops.publicKey.equals(dev.identity.publicKey)) continue; // our own key: ignored
    if (ops.remove) {
      dev.removePeer(ops.publicKey);
      continue;
    }
    if (ops.updateOnly && !dev.getPeer(ops.publicKey)) continue;
    const peer = dev.addPeer(ops.publicKey);
    if (ops.presharedKey) peer.setPresharedKey(ops.presharedKey);
    if (ops.endpoint) dev.setPeerEndpoint(peer, ops.endpoint);
    // Line by line, as wireguard-go inserts them: a block without replace_allowed_ips adds its lines (the addon's
    // insert, O(its lines)), never reading back and setting again the peer's whole list. Before s35 each block did,
    // so a request of many one-line blocks for one peer cost O(blocks × the peer's list): 4,000 took ~12 s (the
    // s35 attacker review), a 16 MiB request's ~160,000 hours, every peer's handshakes waiting. Before s15 even one
    // block scanned its list per line (20,000 lines ~17 s).
    if (ops.replaceAllowedIPs) dev.setPeerAllowedIPs(peer, ops.allowedIPs);
    else if (ops.allowedIPs.length) dev.addPeerAllowedIPs(peer, ops.allowedIPs);
    if (ops.persistentKeepalive !== undefined) dev.setPeerPersistentKeepalive(peer, ops.persistentKeepalive);
  }
}

/** The body of a get response (without errno). */
export function formatGet(dev: WireGuardDevice): string {
  const out: string[] = [];
  if (dev.identity) out.push(`private_key=${dev.identity.privateKey.toString('hex')}`);
  out.push(`listen_port=${dev.listenPort}`);
  if (dev.fwmark) out.push(`fwmark=${dev.fwmark}`);
  const stats = dev.peerStats();
  for (const peer of dev.peers.values()) {
    const s = stats.get(peer.id);
    out.push(`public_key=${peer.publicKeyHex}`);
    out.push(`preshared_key=${peer.presharedKey.toString('hex')}`);
    out.push('protocol_version=1');
    const ep = s?.host ? { host: s.host, port: s.port! } : peer.endpoint;
    if (ep) out.push(`endpoint=${formatEndpoint(ep)}`);
    const ms = peer.lastHandshakeEpochMs;
    out.push(`last_handshake_time_sec=${Math.floor(ms / 1000)}`);
    out.push(`last_handshake_time_nsec=${(ms % 1000) * 1_000_000}`);
    out.push(`tx_bytes=${s?.txBytes ?? 0}`);
    out.push(`rx_bytes=${s?.rxBytes ?? 0}`);
    out.push(`persistent_keepalive_interval=${peer.persistentKeepaliveS}`);
    for (const p of peer.allowedIPs) out.push(`allowed_ip=${formatPrefix(p)}`);
  }
  return out.map((l) => l + '\n').join('');
}

/** Handles one request (its lines without the terminating blank line). */
export function handleRequest(dev: WireGuardDevice, lines: string[]): string {
  const op = lines[0];
  try {
    if (op === 'get=1') {
      if (lines.length > 1) throw new UapiError(UAPI_EINVAL, 'get takes no arguments');
      return formatGet(dev) + 'errno=0\n\n';
    }
    if (op === 'stats=1') {
      // wiremesh extension (wg never sends it): data-path counters, drops by reason.
      const c = dev.native.counters();
      const hs = dev.stats;
      const lines = Object.entries({ ...c, handshakes_initiated: hs.handshakesInitiated, handshakes_completed: hs.handshakesCompleted, handshakes_rejected: hs.handshakesRejected, cookie_replies_consumed: hs.cookieRepliesConsumed, initiations_crossed: hs.initiationsCrossed });
      return lines.map(([k, v]) => `${k}=${v}\n`).join('') + 'errno=0\n\n';
    }
    if (op === 'set=1') {
      applySet(dev, parseSet(lines.slice(1)));
      return 'errno=0\n\n';
    }
    throw new UapiError(UAPI_EINVAL, `invalid UAPI operation "${op ?? ''}"`);
  } catch (err) {
    const errno = err instanceof UapiError ? err.errno : UAPI_EIO;
    dev.log.warn({ err: (err as Error).message }, 'UAPI request rejected');
    return `errno=${errno}\n\n`;
  }
}

export function socketPath(ifname: string): string {
  return `${SOCKET_DIR}/${ifname}.sock`;
}

/** Serves UAPI for dev on /var/run/wireguard/IFNAME.sock (or `path`). */
export async function serveUapi(dev: WireGuardDevice, ifname: string, path = socketPath(ifname)): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  if (existsSync(path)) {
    const live = await new Promise<boolean>((resolve) => {
      const c = createConnection(path);
      c.once('connect', () => (c.destroy(), resolve(true)));
      c.once('error', () => resolve(false));
    });
    if (live) throw new HostError('WM_UAPI_IN_USE', `UAPI socket ${path} is in use by another process`);
    unlinkSync(path);
  }
  const server = createServer((sock: Socket) => {
    // The request so far (no "\n\n" in it) as the chunks it came in: appending to one string and searching it
    // again per chunk was quadratic (16 MiB: 1.6 s of the event loop); each chunk is searched once, with the
    // held text's last character before it (a "\n\n" split across two chunks), and joined once.
    const chunks: string[] = [];
    let held = 0;
    sock.setEncoding('utf8');
    sock.on('data', (data: string) => {
      let chunk = data;
      for (;;) {
        const prev = held > 0 ? chunks[chunks.length - 1]!.slice(-1) : '';
        const at = (prev + chunk).indexOf('\n\n');
        if (at < 0) break;
        const end = held - prev.length + at; // the request's length
        if (end > MAX_REQUEST_CHARS) return void sock.destroy();
        const req = (chunks.join('') + chunk).slice(0, end);
        chunk = chunk.slice(at + 2 - prev.length);
        chunks.length = 0;
        held = 0;
        sock.write(handleRequest(dev, req.split('\n')));
      }
      held += chunk.length;
      if (held > MAX_REQUEST_CHARS) return void sock.destroy();
      if (chunk) chunks.push(chunk);
    });
    sock.on('error', () => sock.destroy());
  });
  // Each connection may hold MAX_REQUEST_CHARS (UTF-16: 32 MiB) before it is cut; Node closes the ones past it.
  server.maxConnections = MAX_UAPI_CONNECTIONS;
  await listenPrivate(server, path);
  server.on('close', () => {
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
  });
  return server;
}
