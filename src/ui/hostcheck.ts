/**
 * Which Host headers the dashboard answers (DNS rebinding). A web page the operator visits can make its own name
 * resolve to the dashboard's address (127.0.0.1); the browser then sends the dashboard's answers to that page as
 * same-origin, with `Host: attacker.example:8300`. The dashboard answers only a Host that names it:
 *   - the address or name it was told to listen on (`--host`), at the port it listens on;
 *   - an IP literal at that port: a page whose origin is an IP literal is not the attacker's name rebound, the
 *     browser resolved nothing (so `wiremesh ui --host 0.0.0.0` is reachable as http://<any address>:8300/);
 *   - `localhost` (and `*.localhost`, RFC 6761: resolved to loopback only) at that port, when it listens on a
 *     loopback or unspecified address.
 * Anything else (another name, another port, no Host) is refused with 421 before any agent is read. A port
 * forward must keep the port (`ssh -L 8300:127.0.0.1:8300`).
 */
import { isIP } from 'node:net';
import { parseIP } from '../net/ip.js';

/** The name and port of a Host header value (`name`, `name:port`, `[v6]:port`; port 80 when absent), or undefined. */
export function parseHostHeader(value: string): { name: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(value);
  if (!m) return undefined;
  const port = m[2] === undefined ? 80 : Number(m[2]);
  if (port > 65535) return undefined;
  return { name: m[1]!.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '').toLowerCase(), port };
}

/** Whether an address (text) is loopback (127/8, ::1) or unspecified (0.0.0.0, ::), or the name localhost. */
function reachesLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost') return true;
  const a = parseIP(h);
  if (!a) return false;
  if (a.length === 4) return a[0] === 127 || a.every((b) => b === 0);
  return a.subarray(0, 15).every((b) => b === 0) && (a[15] === 0 || a[15] === 1);
}

/** Whether the dashboard listening on boundHost:port answers a request with this Host header (see the file's doc). */
export function hostAllowed(header: string | undefined, boundHost: string, port: number): boolean {
  const h = header === undefined ? undefined : parseHostHeader(header);
  if (!h || h.port !== port) return false;
  if (h.name === boundHost.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '').toLowerCase()) return true;
  if (isIP(h.name)) return true;
  return (h.name === 'localhost' || h.name.endsWith('.localhost')) && reachesLoopback(boundHost);
}
