// connectEtcd's TLS credentials (etcdtls.ts), the parts without a network: which host a channel target names,
// when a server name is sent (RFC 6066 §3: a DNS name, never an IPv4 or IPv6 literal), and the check that etcd3's
// pool still has the shape the credentials are put into. test/controlplane/etcd-tls-name.test.ts covers the wire.
import { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { EtcdChannelCredentials, etcdChannelCredentials, etcdTlsClient, targetHost, tlsTarget, useEtcdCredentials } from '../../src/controlplane/etcdtls.js';

describe('etcd TLS target', () => {
  it('takes the host of the first address of a channel target, an IPv6 literal without brackets', () => {
    expect(targetHost({ scheme: 'dns', path: '198.18.0.2:2379' }, {})).toBe('198.18.0.2');
    expect(targetHost({ scheme: 'dns', path: '[fd00::2]:2379' }, {})).toBe('fd00::2');
    expect(targetHost({ scheme: 'dns', path: 'etcd.c1.example:2379' }, {})).toBe('etcd.c1.example');
    expect(targetHost({ scheme: 'ipv4', path: '198.18.0.2:2379,198.18.0.3:2379' }, {})).toBe('198.18.0.2');
    // a dns target is one name (grpc-js takes its whole path): no comma splits it
    expect(targetHost({ scheme: 'dns', path: 'a.example:1,b.example:2' }, {})).toBe('a.example:1,b.example:2');
    expect(targetHost({ scheme: 'dns', path: 'x' }, { 'grpc.http_connect_target': 'ipv6:[fd00::2]:2379,[fd00::3]:2379' })).toBe('fd00::2');
  });

  it('takes the server behind an HTTP CONNECT proxy, not the proxy (the channel target is the proxy then)', () => {
    const proxy = { scheme: 'dns', path: '198.19.0.9:3128' };
    expect(targetHost(proxy, { 'grpc.http_connect_target': 'dns:198.18.0.2:2379' })).toBe('198.18.0.2');
    expect(targetHost(proxy, { 'grpc.http_connect_target': 'dns://198.19.0.53/etcd.c1.example:2379' })).toBe('etcd.c1.example');
    expect(targetHost(proxy, { 'grpc.http_connect_target': '[fd00::2]:2379' })).toBe('fd00::2');
  });

  it('sends a server name for a DNS name only, and checks the certificate against the host either way', () => {
    expect(tlsTarget('198.18.0.2')).toEqual({ host: '198.18.0.2' });
    expect(tlsTarget('fd00::2')).toEqual({ host: 'fd00::2' });
    expect(tlsTarget('::ffff:198.18.0.2')).toEqual({ host: '::ffff:198.18.0.2' });
    expect(tlsTarget('etcd.c1.example')).toEqual({ host: 'etcd.c1.example', servername: 'etcd.c1.example' });
  });
});

describe('etcd TLS credentials in place of etcd3 own', () => {
  // an empty CA: an empty trust store (nothing verifies), enough to build either side's credentials
  const pem = { ca: Buffer.from('') };
  const slots = (c: Etcd3) => (c as unknown as { pool: { hosts: { channelCredentials: unknown }[]; authenticator: { credentials: unknown } } }).pool;

  it("replaces every host's and the authenticator's credentials of a TLS client", () => {
    const creds = etcdChannelCredentials(pem);
    const c = new Etcd3({ hosts: ['https://198.18.0.2:2379', 'https://198.18.0.3:2379'], credentials: { rootCertificate: pem.ca } });
    try {
      useEtcdCredentials(c, creds);
      expect(slots(c).hosts.map((h) => h.channelCredentials)).toEqual([creds, creds]);
      expect(slots(c).authenticator.credentials).toBe(creds);
    } finally {
      c.close();
    }
    // etcdTlsClient's, for http:// endpoints too (a CA given means TLS, as with etcd3's own credentials)
    const t = etcdTlsClient({ hosts: ['http://198.18.0.2:2379'] }, pem);
    try {
      const own = slots(t).authenticator.credentials;
      expect(own).toBeInstanceOf(EtcdChannelCredentials);
      expect(slots(t).hosts[0]!.channelCredentials).toBe(own);
    } finally {
      t.close();
    }
  });

  it('refuses a client of another shape, or without TLS, rather than keep or change its credentials', () => {
    const creds = etcdChannelCredentials(pem);
    expect(() => useEtcdCredentials({} as Etcd3, creds)).toThrow(/etcd3 version changed/);
    const plain = new Etcd3({ hosts: ['http://198.18.0.2:2379'] });
    try {
      expect(() => useEtcdCredentials(plain, creds)).toThrow(/etcd3 version changed/);
    } finally {
      plain.close();
    }
  });

  it('refuses a client certificate without its key, and a key without its certificate', () => {
    expect(() => etcdChannelCredentials({ ...pem, cert: Buffer.from('x') })).toThrow(/needs its key/);
    expect(() => etcdChannelCredentials({ ...pem, key: Buffer.from('x') })).toThrow(/needs its key/);
  });
});
