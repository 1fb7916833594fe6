// Review of s24rec (30a6992): the agent's one table of endpoint records, where endpoint-records-table.test.ts does
// not look. (1) Keys as the agent holds them (compact forms from Admission.endpointKeys, released by the watch after
// its remove, kvstore.ts drop) with the data path throwing midway through a change (as services-incremental's
// 'throwing' mode). The data path keeping its own map tolerates the ipcache claim such a throw leaves behind (its
// map.get of the stale key is undefined); the data path reading admission's table asks EndpointStore for it, whose
// nodeOf reads the released form and throws: every later change at that address throws in the sink (the watch
// skips it: admitted, never in the ipcache), and so does describing any flow to or from it (drainFlows' timer: no
// catch). Regression test: the records view now reads such a form as no key (EndpointStore.admittedIfHeld,
// CompactKeys.holds). (The services index's `old`, (2) of the review, is checked in endpoint-records-table.)
import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/agent/admission.js';
import { handOverEndpoint } from '../../src/agent/endpointhandoff.js';
import { Rejections } from '../../src/controlplane/records/rejections.js';
import { Trust } from '../../src/controlplane/records/trust.js';
import type { EndpointRecord, NodeRecord } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { PolicyDatapath } from '../../src/policy/datapath.js';

const KEY = (i: number) => String.fromCharCode(65 + i).repeat(42) + 'A=';
const nodeKey = (n: string) => `wiremesh/cache/nodes/v1/c2/${n}`;
const epKey = (n: string, ip: string) => `wiremesh/cache/ip/v2/c2/${n}/${ip}`;
const node = (n: string, i: number): NodeRecord => ({ cluster: 'c2', clusterId: 2, name: n, addresses: [`198.18.2.${10 + i}`], port: 51820, publicKey: KEY(i), podCIDRs: ['100.66.0.0/24'], bootId: '1' });
const ep = (n: string, ip: string, identity: number): EndpointRecord => ({ ip, cluster: 'c2', node: n, namespace: 'ns', name: 'p', labels: {}, identity });

/** A data path whose flow log's next forget() throws once `fail.next` is set (services-incremental's 'throwing'). */
function failing(dp: PolicyDatapath): { next: boolean } {
  const fail = { next: false };
  const flowLog = (dp as unknown as { flowLog: { forget(): void } }).flowLog;
  const forget = flowLog.forget.bind(flowLog);
  flowLog.forget = () => {
    if (!fail.next) return forget();
    fail.next = false;
    throw new Error('injected: forget failed');
  };
  return fail;
}

function scenario(table: boolean) {
  const trust = new Trust('c1', 1, ['100.65.0.0/16']);
  trust.pin({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false });
  let dp!: PolicyDatapath;
  const a: Admission = new Admission(trust, new Rejections(), {
    node: () => undefined,
    endpoint: (k, rec, old) => handOverEndpoint(dp, undefined, k, rec, old),
    identity: () => undefined,
    relay: () => undefined,
  });
  dp = new PolicyDatapath(new FakeDevice(), 'c1', 'n1', { defaultLocalCluster: true, ...(table ? { records: a.endpointRecords } : {}) }, silentLogger);
  const fail = failing(dp);
  const forms = a.endpointKeys;
  // the watch (kvstore.ts): acquire on the first upsert, the sink's errors skipped (deliver), release after the remove
  const deliver = (fn: () => void) => {
    try {
      fn();
    } catch {
      /* kvstore.ts deliver: logged, skipped */
    }
  };
  const at = (ip: string) => dp.byAddress.at(ip);
  a.upsert('node', nodeKey('n1'), 'c2', node('n1', 0));
  const ip = '100.66.0.10';
  const fa = forms.acquire(epKey('n1', ip));
  deliver(() => a.upsert('endpoint', fa, 'c2', ep('n1', ip, 0x20101)));
  // n1's pod goes; the data path throws midway through its removal (the ipcache keeps its claim); the watch releases
  // the form after its remove, and with n1's last key its base
  fail.next = true;
  deliver(() => a.remove('endpoint', fa));
  forms.release(fa);
  // n1 goes; its /24 and the address are n2's later (a node replaced)
  a.remove('node', nodeKey('n1'));
  a.upsert('node', nodeKey('n2'), 'c2', node('n2', 1));
  const fb = forms.acquire(epKey('n2', ip));
  let sinkThrew: unknown;
  try {
    a.upsert('endpoint', fb, 'c2', ep('n2', ip, 0x20102));
  } catch (e) {
    sinkThrew = e;
  }
  let described: unknown;
  let atIp: EndpointRecord | undefined;
  try {
    atIp = at(ip);
  } catch (e) {
    described = e;
  }
  return { sinkThrew, described, atIp, admitted: a.endpointRecords.get(fb) };
}

describe('s24rec review: the one table of endpoint records', () => {
  it('the own-map layout (the oracle) tolerates the claim a throwing change left: later changes and flows at the address work', () => {
    const r = scenario(false);
    expect(r.sinkThrew).toBeUndefined();
    expect(r.described).toBeUndefined();
    expect(r.atIp?.node).toBe('n2');
  });

  it('the table layout does too: no later change or flow description at that address throws on the released key', () => {
    const r = scenario(true);
    expect(r.admitted?.node).toBe('n2'); // admission took it either way
    // (both were "Error: compact keys: a released key was read" before the fix)
    expect({ sink: String(r.sinkThrew ?? ''), describe: String(r.described ?? '') }).toEqual({ sink: '', describe: '' });
    expect(r.atIp?.node).toBe('n2');
  });
});
