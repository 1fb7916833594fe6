// `clustermesh connect` checks the operator's relay lists (--a-relay-cidrs / --b-relay-cidrs) before it issues
// any credential or writes anything: a list too wide, too long, naming a special-purpose range or not parsing is
// refused (WM_RELAY_CIDR_INVALID) and leaves both clusters as they were. Two real etcds (one per cluster), each
// with its PKI folder. Oracle: a snapshot of each side taken before (every key and value, the store's revision,
// users and roles, the PKI folder's files) equals the one after; RFC 6890's special-purpose ranges for the lists.
// Controls: a valid list gets as far as issuing a reader certificate (the snapshot sees it), and without PKI a valid
// connect writes the pins and remotes (the snapshot sees that too).
import { describe, expect, it } from 'vitest';
import { connectClusters, enableCluster, type ClusterAccess, type ConnectOptions } from '../../src/controlplane/clustermesh.js';
import { createCA } from '../../src/controlplane/pki.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { etcdPair, snapshot } from '../helpers/meshsnapshot.js';

describe.skipIf(!hasCommand('etcd') || !hasCommand('openssl'))('connect refuses bad relay lists before it changes anything', () => {
  const { etcds, dirs } = etcdPair('relaylist', [51000, 53000]);

  it('too wide, too many, special-purpose or unparsable: WM_RELAY_CIDR_INVALID, both etcds and PKI folders untouched', async () => {
    const access: ClusterAccess[] = [];
    for (const [i, [name, id]] of ([['c1', 1], ['c2', 2]] as const).entries()) {
      await etcds[i]!.client();
      access.push({ endpoints: [etcds[i]!.url()!], pkiDir: dirs[i]! });
      createCA(dirs[i]!, name);
      // both hubs: each side's list applies
      await enableCluster({ endpoints: access[i]!.endpoints }, { name, id, podCIDRs: [`100.${64 + id}.0.0/16`], underlayCIDRs: [`198.18.${id}.0/24`], relay: true });
    }
    const bad: Array<[string, string[]]> = [
      ['wider than /8', ['100.70.0.0/16', '44.0.0.0/7']],
      ['wider than /16 (IPv6)', ['fd00::/15']],
      ['the whole space', ['0.0.0.0/0']],
      ['129 ranges (at most 128)', Array.from({ length: 129 }, (_, i) => `44.${i}.0.0/16`)],
      ['link-local, a metadata service', ['169.254.169.254/32']],
      ['loopback', ['127.0.0.0/8']],
      ['multicast', ['224.0.0.0/8']],
      ['all of shared space (holds platform addresses)', ['100.64.0.0/10']],
      ['NAT64', ['64:ff9b::/96']],
      ['6to4', ['2002::/16']],
      ['IPv6 link-local', ['fe80::/64']],
      ['not a CIDR', ['nope']],
    ];
    const before = await Promise.all(access.map(snapshot));
    for (const [why, list] of bad)
      for (const side of ['aRelayCIDRs', 'bRelayCIDRs'] as const) {
        const opts: ConnectOptions = { [side]: list };
        await expect(connectClusters(access[0]!, access[1]!, opts), `${side} ${why}`).rejects.toMatchObject({ code: 'WM_RELAY_CIDR_INVALID' });
        expect(await Promise.all(access.map(snapshot)), `${side} ${why}`).toEqual(before);
      }

    // control: a valid list goes on to issue B's reader certificate for A (a user in B's etcd, the CA's serial),
    // then fails its pre-flight (TLS to a plain etcd): the snapshot sees what a connect issues
    await expect(connectClusters(access[0]!, access[1]!, { aRelayCIDRs: ['100.66.0.0/16'] })).rejects.toThrow();
    expect((await Promise.all(access.map(snapshot)))[1]).not.toEqual(before[1]);
    // control: without PKI, a valid connect writes the pins and remotes on both sides
    const plain = access.map(({ endpoints }) => ({ endpoints }));
    const mid = await Promise.all(plain.map(snapshot));
    await connectClusters(plain[0]!, plain[1]!, { aRelayCIDRs: ['100.66.0.0/16'], bRelayCIDRs: ['100.65.0.0/16'] });
    const after = await Promise.all(plain.map(snapshot));
    for (const i of [0, 1]) expect(after[i]).not.toEqual(mid[i]);
  }, 120_000);
});
