// The dashboard (`wiremesh ui`) under DNS rebinding (red-team review): a page the operator visits made its own
// name resolve to 127.0.0.1 and read /api/mesh (`Host: attacker.test` got a 200 with the whole mesh). Real
// requests on loopback; the attacker is a Host header naming something else.
import { connect, type AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { MeshDashboard } from '../../src/ui/server.js';
import { hostAllowed, parseHostHeader } from '../../src/ui/hostcheck.js';

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** GET path with exactly this Host header (none when undefined): the status code of the answer. */
function get(port: number, path: string, host: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\n${host === undefined ? '' : `Host: ${host}\r\n`}Connection: close\r\n\r\n`));
    let text = '';
    s.on('data', (d) => (text += d.toString('latin1')));
    s.on('error', reject);
    s.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0)));
  });
}

describe('dashboard Host check (DNS rebinding)', () => {
  it('regression: a Host that does not name the dashboard gets 421, its own host:port 200', async () => {
    const dash = new MeshDashboard([]);
    const server = await dash.listen(0, '127.0.0.1');
    servers.push(server);
    const port = (server.address() as AddressInfo).port;
    // before: 200 with the mesh JSON for every one of these
    expect(await get(port, '/api/mesh', `attacker.test:${port}`)).toBe(421);
    expect(await get(port, '/api/mesh', 'attacker.test')).toBe(421);
    expect(await get(port, '/', `attacker.test:${port}`)).toBe(421);
    expect(await get(port, '/api/mesh', `127.0.0.1:${port + 1 > 65535 ? 1 : port + 1}`)).toBe(421);
    expect(await get(port, '/api/mesh', undefined)).toBe(400); // HTTP/1.1 without Host: Node refuses it itself
    expect(dash.refusedHosts).toBe(4);
    for (const ok of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST.:${port}`, `[::1]:${port}`]) expect(await get(port, '/api/mesh', ok), ok).toBe(200);
    expect(await get(port, '/', `127.0.0.1:${port}`)).toBe(200);
  });

  it('names: the bound name, IP literals, localhost only when bound to loopback or everything', () => {
    expect(parseHostHeader('[::1]:8300')).toEqual({ name: '::1', port: 8300 });
    expect(parseHostHeader('Example.ORG.')).toEqual({ name: 'example.org', port: 80 });
    expect(parseHostHeader('a:b:c')).toBeUndefined();
    expect(parseHostHeader('a:99999')).toBeUndefined();
    expect(hostAllowed('dash.example:8300', 'dash.example', 8300)).toBe(true);
    expect(hostAllowed('dash.example:8300', '198.18.0.1', 8300)).toBe(false);
    expect(hostAllowed('198.18.0.1:8300', '0.0.0.0', 8300)).toBe(true);
    expect(hostAllowed('localhost:8300', '0.0.0.0', 8300)).toBe(true);
    expect(hostAllowed('localhost:8300', '::', 8300)).toBe(true);
    expect(hostAllowed('app.localhost:8300', '127.0.0.2', 8300)).toBe(true);
    expect(hostAllowed('localhost:8300', '198.18.0.1', 8300)).toBe(false);
    expect(hostAllowed('localhost.attacker.test:8300', '127.0.0.1', 8300)).toBe(false);
    expect(hostAllowed('127.0.0.1:8300', '127.0.0.1', 8301)).toBe(false);
  });
});
