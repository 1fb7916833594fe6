/**
 * A cluster's PKI for etcd, made with the openssl CLI (EC P-256):
 *
 *   <dir>/ca.crt, ca.key         the cluster CA (trusted by its etcd for clients)
 *   <dir>/etcd.crt, etcd.key     etcd's server certificate (IP SANs)
 *   <dir>/root.crt, root.key     CN=root: operator commands only (enable, connect, apply, status, disconnect, node-credentials)
 *   <dir>/kvstoremesh.crt, .key  CN=kvstoremesh: the cluster's kvstoremesh
 *   <dir>/observer.crt, .key     CN=observer: gateway-dns and other read-only observers
 *
 * Each agent gets its own CN=node-<node> certificate from `clustermesh
 * node-credentials` (rbac.ts issueNodeCredentials); rbac.ts has every role.
 * Remote clusters get CN=remote-<their name> certificates issued at connect
 * time; with --client-cert-auth etcd maps the CN to an etcd user, whose role
 * allows reading wiremesh/state/ only.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MeshError } from '../errors.js';

export interface Pem {
  ca: string;
  cert: string;
  key: string;
}

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new MeshError('WM_PKI', `openssl ${args[0]} failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
  }
}

export function createCA(dir: string, cluster: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (existsSync(join(dir, 'ca.crt'))) return;
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, 'ca.key')]);
  openssl(['req', '-x509', '-new', '-key', join(dir, 'ca.key'), '-subj', `/CN=wiremesh-${cluster}-ca`, '-days', '3650', '-out', join(dir, 'ca.crt'),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

/**
 * Issues <dir>/<file>.crt/.key signed by the CA in `caDir`: subject CN=`cn`, subject alternative names IP:`ips`
 * and DNS:`names` (a client verifies a server against those, never its CN).
 */
export function issue(caDir: string, dir: string, file: string, cn: string, opts: { ips?: string[]; names?: string[]; server?: boolean } = {}): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = join(dir, `${file}.key`);
  const csr = join(dir, `${file}.csr`);
  const ext = join(dir, `${file}.ext`);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  openssl(['req', '-new', '-key', key, '-subj', `/CN=${cn}`, '-out', csr]);
  const lines = [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${opts.server ? 'serverAuth,clientAuth' : 'clientAuth'}`,
  ];
  const sans = [...(opts.ips ?? []).map((ip) => `IP:${ip}`), ...(opts.names ?? []).map((n) => `DNS:${n}`)];
  if (sans.length) lines.push(`subjectAltName=${sans.join(',')}`);
  writeFileSync(ext, lines.join('\n') + '\n');
  openssl(['x509', '-req', '-in', csr, '-CA', join(caDir, 'ca.crt'), '-CAkey', join(caDir, 'ca.key'), '-CAcreateserial', '-days', '825', '-extfile', ext, '-out', join(dir, `${file}.crt`)]);
  rmSync(csr);
  rmSync(ext);
  chmodSync(key, 0o600);
}

/** Makes a cluster's CA, etcd server cert (for `ips`), and the root, kvstoremesh and observer client certs. */
export function createClusterPKI(dir: string, cluster: string, ips: string[]): void {
  createCA(dir, cluster);
  issue(dir, dir, 'etcd', `etcd-${cluster}`, { ips, server: true });
  issue(dir, dir, 'root', 'root');
  issue(dir, dir, 'kvstoremesh', 'kvstoremesh');
  issue(dir, dir, 'observer', 'observer');
}

/** A CN=remote-<reader> client certificate from `caDir`, as PEM strings. */
export function issueRemoteReader(caDir: string, reader: string): Pem {
  const tmp = join(caDir, `.issue-${process.pid}-${Date.now()}`);
  try {
    issue(caDir, tmp, 'reader', `remote-${reader}`);
    return {
      ca: readFileSync(join(caDir, 'ca.crt'), 'utf8'),
      cert: readFileSync(join(tmp, 'reader.crt'), 'utf8'),
      key: readFileSync(join(tmp, 'reader.key'), 'utf8'),
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The CA and a client certificate of a cluster's PKI folder: root (operator) by default. */
export const pkiFiles = (dir: string, user: 'root' | 'kvstoremesh' | 'observer' = 'root') => ({ caFile: join(dir, 'ca.crt'), certFile: join(dir, `${user}.crt`), keyFile: join(dir, `${user}.key`) });
