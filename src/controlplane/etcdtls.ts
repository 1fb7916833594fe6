/**
 * TLS to an etcd as RFC 6066 (§3) wants it: the server name (SNI) is sent only when the endpoint is a DNS name,
 * never an IP literal, and the server's certificate is verified against the endpoint either way (Node's
 * tls.checkServerIdentity: a name against DNS SANs, an IP address against IP SANs only).
 *
 * Why not etcd3's own credentials: it makes them with grpc-js's createSsl, whose connector always sets the
 * target host as `servername`, and Node warns (DEP0123, "Setting the TLS ServerName to an IP address is not
 * permitted by RFC 6066") at the first connection of every process to an etcd by IP address: every agent,
 * kvstoremesh and CLI here (cluster configs name etcd by IP). grpc-js's `grpc.ssl_target_name_override` sends
 * the override as SNI instead (one for every endpoint of a client), so it cannot mean "none". The connector
 * below is grpc-js's SecureConnectorImpl (channel-credentials.js, 1.14.7) without that servername; verification
 * is Node's default (rejectUnauthorized, checkServerIdentity), as it was; GRPC_SSL_CIPHER_SUITES in the
 * environment is honoured as grpc-js does. Not honoured: the channel options `grpc.ssl_target_name_override` and
 * `grpc-node.tls_enable_trace` (connectEtcd sets neither). One thing grpc-js lacks: a handshake that does not
 * finish within the dial timeout fails (an endpoint that accepts TCP and never answers TLS held the connect,
 * and every call waiting for it, forever: etcd3 never reads its `dialTimeout`).
 */
import { isIP, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext } from 'node:tls';
import { CallCredentials, ChannelCredentials, experimental, type ChannelOptions } from '@grpc/grpc-js';
import { Etcd3, type IOptions } from 'etcd3';

/** The PEM buffers of connectEtcd's TLS options: the CA, and the client certificate and key for mutual TLS. */
export interface EtcdTlsPem {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** grpc-js's URI grammar (uri-parser.ts parseUri, not exported): [scheme:][//authority/]path. */
const GRPC_URI = /^(?:([A-Za-z0-9+.-]+):)?(?:\/\/([^/]*)\/)?(.+)$/;

/**
 * The server's host for a grpc-js channel target, as grpc-js's own connector takes it: through an HTTP CONNECT
 * proxy (grpc_proxy/https_proxy/http_proxy in the environment) the channel's target is the proxy and
 * `grpc.http_connect_target` the server; a dns target is one "host:port", ipv4/ipv6 targets are "host:port[,…]"
 * and the first one names the server (the resolvers' getDefaultAuthority). An IPv6 literal comes without its
 * brackets.
 */
export function targetHost(target: experimental.GrpcUri, options: ChannelOptions): string {
  const proxied = options['grpc.http_connect_target'];
  const uri = typeof proxied === 'string' ? GRPC_URI.exec(proxied) : null;
  const scheme = uri ? uri[1] : target.scheme;
  const path = uri?.[3] ?? target.path;
  const authority = scheme === 'ipv4' || scheme === 'ipv6' ? (path.split(',')[0] ?? '') : path;
  return experimental.splitHostPort(authority)?.host ?? authority;
}

/** Node's tls.connect options for `host`: SNI only for a DNS name (RFC 6066 §3), the certificate checked against `host`. */
export function tlsTarget(host: string): { host: string; servername?: string } {
  return isIP(host) ? { host } : { host, servername: host };
}

/** grpc-js channel credentials whose connector sends no server name for an IP endpoint (etcdChannelCredentials makes them). */
export class EtcdChannelCredentials extends ChannelCredentials {
  /** `handshakeTimeoutMs`: a TLS handshake not finished by then fails its connection. */
  constructor(
    private readonly context: SecureContext,
    private readonly handshakeTimeoutMs: number,
  ) {
    super();
  }

  _isSecure(): boolean {
    return true;
  }

  _equals(other: ChannelCredentials): boolean {
    return other === this;
  }

  _createSecureConnector(target: experimental.GrpcUri, options: ChannelOptions, callCredentials?: CallCredentials): experimental.SecureConnector {
    const secureContext = this.context;
    const peer = tlsTarget(targetHost(target, options));
    const calls = callCredentials ?? CallCredentials.createEmpty();
    const ms = this.handshakeTimeoutMs;
    return {
      connect: (socket: Socket) =>
        new Promise((resolve, reject) => {
          const tls = tlsConnect({ socket, secureContext, ...peer, ALPNProtocols: ['h2'], rejectUnauthorized: true }, () => {
            clearTimeout(timer);
            // Node refused an unverified peer already (rejectUnauthorized); checked again as grpc-js does
            if (!tls.authorized) reject(tls.authorizationError);
            else resolve({ socket: tls, secure: true });
          });
          const timer = setTimeout(() => tls.destroy(new Error(`etcd TLS handshake with ${peer.host} not finished within ${ms} ms`)), ms);
          tls.on('error', (err) => {
            clearTimeout(timer);
            reject(err);
          });
        }),
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => calls,
      destroy: () => {},
    };
  }
}

/**
 * grpc-js channel credentials for an etcd: `pem`'s CA (only) trusted, its client certificate presented, a TLS
 * handshake given `handshakeTimeoutMs` (default 3000 ms, connectEtcd's dial timeout).
 */
export function etcdChannelCredentials(pem: EtcdTlsPem, handshakeTimeoutMs = 3000): ChannelCredentials {
  if (!pem.cert !== !pem.key) throw new Error('etcd TLS: a client certificate needs its key and a key its certificate');
  const ciphers = process.env.GRPC_SSL_CIPHER_SUITES;
  return new EtcdChannelCredentials(createSecureContext({ ca: pem.ca, ...(pem.cert ? { cert: pem.cert, key: pem.key } : {}), ...(ciphers ? { ciphers } : {}) }), handshakeTimeoutMs);
}

/** The part of etcd3's (internal) ConnectionPool holding the channel credentials: every host's and the authenticator's. */
interface CredentialSlots {
  hosts: { channelCredentials: ChannelCredentials; cachedServices: Record<string, unknown> }[];
  authenticator: { credentials: ChannelCredentials };
}

/**
 * Puts `credentials` in place of the TLS ones etcd3 made for `etcd` (just constructed: no channel opened yet).
 * etcd3 is pinned (package.json); a pool of another shape throws here rather than keep credentials other than
 * these, and so do one without TLS (nothing to replace: these never turn a plain client into a TLS one) and one
 * that opened a channel already.
 */
export function useEtcdCredentials(etcd: Etcd3, credentials: ChannelCredentials): void {
  const pool = (etcd as unknown as { pool?: Partial<CredentialSlots> }).pool;
  const own = pool?.authenticator?.credentials;
  const hosts = pool?.hosts;
  if (!(own instanceof ChannelCredentials) || !own._isSecure() || !Array.isArray(hosts) || hosts.length === 0 ||
      !hosts.every((h) => h.channelCredentials === own && typeof h.cachedServices === 'object' && h.cachedServices !== null))
    throw new Error('etcd3 client without the TLS connection pool etcdtls.ts expects (etcd3 version changed?)');
  if (hosts.some((h) => Object.keys(h.cachedServices).length > 0)) throw new Error('etcd TLS credentials: the client opened a channel already; they are put in before its first call');
  for (const h of hosts) h.channelCredentials = credentials;
  pool!.authenticator!.credentials = credentials;
}

/**
 * An etcd3 client for `opts` over TLS with `pem` (etcdChannelCredentials; opts.credentials is not used). etcd3 is
 * given credentials that trust no CA, only so that it makes a TLS client (its own from `pem` would parse the PEM
 * again, ~1 ms per client, to be thrown away); they are replaced before any channel opens, and were they ever
 * used, every server would be refused. Throws as etcdChannelCredentials and useEtcdCredentials do.
 */
export function etcdTlsClient(opts: IOptions, pem: EtcdTlsPem): Etcd3 {
  const credentials = etcdChannelCredentials(pem, opts.dialTimeout);
  const etcd = new Etcd3({ ...opts, credentials: { rootCertificate: Buffer.alloc(0) } });
  try {
    useEtcdCredentials(etcd, credentials);
  } catch (err) {
    etcd.close();
    throw err;
  }
  return etcd;
}
