// Regression: every process that connected to an etcd by IP address over TLS (agents, kvstoremesh, the CLI:
// cluster configs name etcd by IP) printed Node's "[DEP0123] DeprecationWarning: Setting the TLS ServerName to
// an IP address is not permitted by RFC 6066": grpc-js, under etcd3, sent the IP as the TLS server name.
// connectEtcd's credentials (etcdtls.ts) send none for an IP and verify etcd's certificate against the endpoint
// as before. Oracles: RFC 6066 §3 (a literal IPv4/IPv6 address is not a HostName; a DNS name is sent), as a TLS
// server sees the ClientHello; RFC 6125 §6.4 / RFC 9525 as Node implements it: an IP endpoint matches only an
// iPAddress SAN (not a dNSName spelling it, not the CN); the chain must end at the cluster CA.
// A real etcd on loopback with mutual TLS for the working paths; the impostors are plain TLS servers presenting
// the attacker's certificates (what they serve after the handshake does not matter: they must get nothing).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectEtcd } from '../../src/controlplane/kvstore.js';
import { createCA, issue } from '../../src/controlplane/pki.js';
import { startEtcd, type EtcdProcess } from '../../src/testbed/etcd.js';
import { hasCommand } from '../../src/testbed/netns.js';

const enabled = hasCommand('etcd') && hasCommand('openssl');

/** What a TLS server saw: the server name of each completed handshake (false: none sent), application bytes. */
interface Seen {
  servernames: (string | false | null)[];
  bytes: number;
}

/** A TLS server on [::]:0 (IPv4 too) presenting <dir>/<file>.crt; `hangUp` closes each connection after its handshake. */
async function tlsServer(dir: string, file: string, hangUp: boolean): Promise<{ port: number; seen: Seen; server: Server }> {
  const seen: Seen = { servernames: [], bytes: 0 };
  const server = createServer({ cert: readFileSync(join(dir, `${file}.crt`)), key: readFileSync(join(dir, `${file}.key`)), ALPNProtocols: ['h2'] }, (s) => {
    seen.servernames.push(s.servername);
    s.on('data', (b: Buffer) => (seen.bytes += b.length));
    s.on('error', () => {});
    if (hangUp) s.destroy();
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '::', resolve));
  return { port: (server.address() as AddressInfo).port, seen, server };
}

/**
 * An HTTP CONNECT proxy on 127.0.0.3 (grpc-js uses one named by grpc_proxy): tunnels to what each CONNECT asks
 * for, or, hostile, to `to` whatever it asks for; `asked` lists the CONNECT targets.
 */
async function connectProxy(to?: number): Promise<{ url: string; asked: string[]; server: HttpServer }> {
  const asked: string[] = [];
  const server = createHttpServer().on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    asked.push(req.url ?? '');
    const [host, port] = to ? ['127.0.0.1', to] : [req.url!.slice(0, req.url!.lastIndexOf(':')), Number(req.url!.slice(req.url!.lastIndexOf(':') + 1))];
    const up = netConnect(port, host, () => {
      client.write('HTTP/1.1 200 Connection established\r\n\r\n');
      up.write(head);
      up.pipe(client).pipe(up);
    });
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.3', resolve));
  return { url: `http://127.0.0.3:${(server.address() as AddressInfo).port}`, asked, server };
}

/** Runs `fn` with grpc-js's proxy variables set to `url` only (none of the environment's no_proxy lists). */
async function viaProxy<T>(url: string, fn: () => Promise<T>): Promise<T> {
  const names = ['grpc_proxy', 'https_proxy', 'http_proxy', 'no_grpc_proxy', 'no_proxy'];
  const saved = names.map((n) => process.env[n]);
  for (const n of names) delete process.env[n];
  process.env.grpc_proxy = url;
  try {
    return await fn();
  } finally {
    names.forEach((n, i) => (saved[i] === undefined ? delete process.env[n] : (process.env[n] = saved[i])));
  }
}

describe.skipIf(!enabled)('TLS to etcd: server name and certificate checks', () => {
  let dir: string;
  let pki: string;
  let etcd: EtcdProcess;
  const servers: (Server | HttpServer)[] = [];
  const port = 26000 + (process.pid % 1000);
  const client = () => ({ caFile: join(pki, 'ca.crt'), certFile: join(pki, 'root.crt'), keyFile: join(pki, 'root.key'), dialTimeoutMs: 2000 });
  /** One get through connectEtcd to `endpoint`: undefined when it succeeded, else its error. */
  async function get(endpoint: string): Promise<Error | undefined> {
    const c = connectEtcd({ endpoints: [endpoint], ...client() });
    try {
      await c.get('wiremesh/tls-probe').string();
      return undefined;
    } catch (err) {
      return err as Error;
    } finally {
      c.close();
    }
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-etcdtls-'));
    pki = join(dir, 'pki');
    createCA(pki, 'c1');
    issue(pki, pki, 'etcd', 'etcd-c1', { ips: ['127.0.0.1', '::1'], names: ['localhost'], server: true });
    issue(pki, pki, 'root', 'root');
    etcd = await startEtcd({
      name: 'etcdtls', dataDir: join(dir, 'data'), host: '127.0.0.1', clientPort: port, peerPort: port + 1000,
      tls: { certFile: join(pki, 'etcd.crt'), keyFile: join(pki, 'etcd.key'), caFile: join(pki, 'ca.crt') },
    });
  }, 60_000);
  afterAll(async () => {
    await etcd?.stop();
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs `fn`, then fails on a DEP0123 warning it caused (Node warns once per process: a later one would not show). */
  async function withoutIpServerNameWarning(fn: () => Promise<void>): Promise<void> {
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => void warnings.push(`${w.code ?? w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      await fn();
      // Node emits warnings on a later tick
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => /DEP0123|ServerName/.test(w))).toEqual([]);
  }

  it('talks to etcd by IP address over mutual TLS without the DEP0123 warning', async () => {
    expect(etcd.clientUrl).toMatch(/^https:\/\/127\.0\.0\.1:/);
    await withoutIpServerNameWarning(async () => {
      const c = connectEtcd({ endpoints: [etcd.clientUrl], ...client() });
      try {
        await c.put('wiremesh/tls-probe').value('v1');
        expect(await c.get('wiremesh/tls-probe').string()).toBe('v1');
      } finally {
        c.close();
      }
    });
  });

  // etcd3 authenticates a password on a client of its own (its Authenticator): that one rides these credentials too
  it('authenticates a password over TLS by IP address, without the warning; a wrong password is refused', async () => {
    const root = connectEtcd({ endpoints: [etcd.clientUrl], ...client() });
    try {
      await root.user('root').create('pw');
      await root.user('root').addRole('root');
      await root.auth.authEnable({});
    } finally {
      root.close();
    }
    const withPassword = (password: string) => connectEtcd({ endpoints: [etcd.clientUrl], ...client(), username: 'root', password });
    await withoutIpServerNameWarning(async () => {
      const c = withPassword('pw');
      try {
        expect(await c.get('wiremesh/tls-probe').string()).toBe('v1');
      } finally {
        c.close();
      }
    });
    const wrong = withPassword('not-pw');
    try {
      await expect(wrong.get('wiremesh/tls-probe').string()).rejects.toThrow(/authentication failed/);
    } finally {
      wrong.close();
    }
  });

  // through a proxy grpc-js's channel target is the proxy: the certificate is still checked against etcd's address
  it('talks to etcd through an HTTP CONNECT proxy; a proxy that tunnels to an impostor is refused', async () => {
    const honest = await connectProxy();
    servers.push(honest.server);
    await withoutIpServerNameWarning(async () => expect(await viaProxy(honest.url, () => get(etcd.clientUrl))).toBeUndefined());
    expect(honest.asked).toContain(`127.0.0.1:${port}`);
    // the impostor's certificate names the proxy's address: a client checking it against the proxy would accept it
    const bad = join(dir, 'proxied-impostor');
    issue(pki, bad, 'cert', 'etcd-c1', { ips: ['127.0.0.2', '127.0.0.3'], server: true });
    const impostor = await tlsServer(bad, 'cert', false);
    const hostile = await connectProxy(impostor.port);
    servers.push(impostor.server, hostile.server);
    expect((await viaProxy(hostile.url, () => get(etcd.clientUrl)))?.message).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/);
    expect(hostile.asked).toContain(`127.0.0.1:${port}`);
    expect(impostor.seen.bytes).toBe(0);
  });

  it('talks to etcd by DNS name (its certificate names localhost)', async () => {
    expect(await get(`https://localhost:${port}`)).toBeUndefined();
  });

  it('the placeholder credentials etcdTlsClient gives etcd3 refuse the real etcd (they trust no CA)', async () => {
    // by name: etcd3's own credentials would send an IP as the server name, and Node warns only once per process
    const c = new Etcd3({ hosts: [`https://localhost:${port}`], credentials: { rootCertificate: Buffer.alloc(0) }, dialTimeout: 2000 });
    try {
      await expect(c.get('wiremesh/tls-probe').string()).rejects.toThrow(/unable to (verify|get local issuer)/);
    } finally {
      c.close();
    }
  });

  it('sends no server name for an IPv4 or IPv6 endpoint, and the name for a DNS name (RFC 6066 §3)', async () => {
    const s = await tlsServer(pki, 'etcd', true);
    servers.push(s.server);
    for (const [endpoint, sni] of [[`https://127.0.0.1:${s.port}`, false], [`https://[::1]:${s.port}`, false], [`https://localhost:${s.port}`, 'localhost']] as const) {
      s.seen.servernames.length = 0;
      await get(endpoint);
      // the handshake completed (the certificate names each endpoint), with the server name RFC 6066 allows
      expect(s.seen.servernames.length, endpoint).toBeGreaterThan(0);
      expect(new Set(s.seen.servernames), endpoint).toEqual(new Set([sni]));
    }
  });

  it('gives up on an endpoint that accepts TCP and never answers the TLS handshake (was: the call hung forever)', async () => {
    const held: Socket[] = [];
    const silent = createNetServer((sock) => void held.push(sock.on('error', () => {})));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const err = await get(`https://127.0.0.1:${(silent.address() as AddressInfo).port}`);
      expect(err?.message).toMatch(/etcd TLS handshake with 127\.0\.0\.1 not finished within 2000 ms/);
      expect(held.length).toBeGreaterThan(0);
    } finally {
      for (const sock of held) sock.destroy();
      silent.close();
    }
  }, 60_000);

  // an impostor at 127.0.0.1 with a certificate it could get: one for another etcd of the same CA, one whose CN
  // (not a SAN) is the address, one naming the address as a DNS name (and localhost), the right address from
  // another CA; and, reached by name, one for another name with the right address. Each is refused for its
  // certificate (Node's reason in grpc's error) before any application data reaches it
  const altname = /ERR_TLS_CERT_ALTNAME_INVALID/;
  const impostors: [string, (bad: string) => void, RegExp, string?][] = [
    ['another name (reached as localhost)', (bad) => issue(pki, bad, 'cert', 'localhost', { ips: ['127.0.0.1'], names: ['etcd.invalid'], server: true }), altname, 'localhost'],
    ['another IP of the same CA', (bad) => issue(pki, bad, 'cert', 'etcd-c1', { ips: ['127.0.0.2'], names: ['etcd.invalid'], server: true }), altname],
    ['the IP as CN only', (bad) => issue(pki, bad, 'cert', '127.0.0.1', { server: true }), altname],
    ['the IP as a DNS SAN', (bad) => issue(pki, bad, 'cert', 'etcd-c1', { names: ['127.0.0.1', 'localhost'], server: true }), altname],
    ['the right IP from another CA', (bad) => {
      createCA(bad, 'evil');
      issue(bad, bad, 'cert', 'etcd-c1', { ips: ['127.0.0.1'], server: true });
    }, /unable to verify the first certificate/],
  ];
  for (const [what, make, reason, host = '127.0.0.1'] of impostors) {
    it(`refuses an etcd impostor presenting ${what}`, async () => {
      const bad = join(dir, what.replace(/\W+/g, '-'));
      make(bad);
      const s = await tlsServer(bad, 'cert', false);
      servers.push(s.server);
      const err = await get(`https://${host}:${s.port}`);
      expect(err?.message, what).toMatch(reason);
      expect(s.seen.bytes, what).toBe(0);
    });
  }
});
