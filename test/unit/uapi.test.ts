import { afterEach, describe, expect, it } from 'vitest';
import { generatePrivateKey, publicFromPrivate } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { handleRequest, UAPI_EINVAL, UAPI_EPROTO } from '../../src/wireguard/uapi.js';

const devices: WireGuardDevice[] = [];
afterEach(() => {
  for (const d of devices.splice(0)) d.close();
});
const dev = () => {
  const d = new WireGuardDevice({ createTun: false });
  devices.push(d);
  return d;
};
const hex = (b: Buffer) => b.toString('hex');

describe('UAPI', () => {
  it('set then get round-trips the configuration', () => {
    const d = dev();
    const sk = generatePrivateKey();
    const peer = publicFromPrivate(generatePrivateKey());
    const r = handleRequest(d, [
      'set=1',
      `private_key=${hex(sk)}`,
      'fwmark=51',
      `public_key=${hex(peer)}`,
      `preshared_key=${'ab'.repeat(32)}`,
      'endpoint=[fd00::1]:51820',
      'persistent_keepalive_interval=25',
      'replace_allowed_ips=true',
      'allowed_ip=100.64.7.1/24',
      'allowed_ip=fd00:1::/64',
    ]);
    expect(r).toBe('errno=0\n\n');
    const get = handleRequest(d, ['get=1']);
    expect(get).toContain(`private_key=${hex(sk)}\n`);
    expect(get).toContain(`listen_port=${d.listenPort}\n`);
    expect(get).toContain('fwmark=51\n');
    expect(get).toContain(`public_key=${hex(peer)}\npreshared_key=${'ab'.repeat(32)}\nprotocol_version=1\nendpoint=[fd00::1]:51820\n`);
    expect(get).toContain('persistent_keepalive_interval=25\nallowed_ip=100.64.7.0/24\nallowed_ip=fd00:1::/64\nerrno=0\n\n');
  });

  it('a bad request gets its errno and changes nothing', () => {
    const d = dev();
    const peer = publicFromPrivate(generatePrivateKey());
    handleRequest(d, ['set=1', `public_key=${hex(peer)}`, 'allowed_ip=100.64.0.0/16']);
    const before = handleRequest(d, ['get=1']);
    const cases: Array<[string[], number]> = [
      [['set=1', 'listen_port=70000'], UAPI_EINVAL],
      [['set=1', 'private_key=zz'], UAPI_EINVAL],
      [['set=1', 'bogus_key=1'], UAPI_EINVAL],
      [['set=1', 'no equals sign'], UAPI_EPROTO],
      [['set=1', `public_key=${hex(peer)}`, 'allowed_ip=100.64.0.0/33'], UAPI_EINVAL],
      [['set=1', 'replace_peers=true', `public_key=${hex(peer)}`, 'endpoint=nonsense'], UAPI_EINVAL],
      [['set=1', `public_key=${hex(peer)}`, 'protocol_version=2'], UAPI_EINVAL],
      [['get=2'], UAPI_EINVAL],
    ];
    for (const [req, errno] of cases) expect([req.join('|'), handleRequest(d, req)]).toEqual([req.join('|'), `errno=${errno}\n\n`]);
    expect(handleRequest(d, ['get=1'])).toBe(before);
  });

  it('remove, update_only and replace_peers behave as in wireguard-go', () => {
    const d = dev();
    const [p1, p2] = [publicFromPrivate(generatePrivateKey()), publicFromPrivate(generatePrivateKey())];
    handleRequest(d, ['set=1', `public_key=${hex(p1)}`, `public_key=${hex(p2)}`, 'update_only=true']);
    expect([...d.peers.keys()]).toEqual([hex(p1)]);
    handleRequest(d, ['set=1', `public_key=${hex(p1)}`, 'allowed_ip=100.64.1.0/24', `public_key=${hex(p2)}`, 'allowed_ip=100.64.1.0/24']);
    // an address belongs to one peer only
    expect(d.getPeer(p1)!.allowedIPs.length).toBe(0);
    expect(d.getPeer(p2)!.allowedIPs.length).toBe(1);
    handleRequest(d, ['set=1', `public_key=${hex(p1)}`, 'remove=true']);
    expect([...d.peers.keys()]).toEqual([hex(p2)]);
    handleRequest(d, ['set=1', 'replace_peers=true']);
    expect(d.peers.size).toBe(0);
  });
});
