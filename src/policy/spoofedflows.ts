/**
 * Flow records for packets the pod guard dropped at a pod's veth because
 * their source was not the pod's (src/agent/spoofwatch.ts): the source side
 * is the sending pod (found by its veth name) with the address it claimed.
 * Moved out of datapath.ts (PolicyDatapath.addSpoofedFlows) as is.
 */
import type { SpoofedTuple } from '../agent/spoofwatch.js';
import { podVeth } from '../testbed/podguard.js';
import type { FlowLog } from './flowlog.js';
import { flowProtocol, type Flow, type FlowEndpoint } from './flows.js';

/** What a batch of spoofed tuples is read against: the local endpoints, the flow log's endpoint view, any address's identity (0: unknown). */
export interface SpoofContext {
  /** The local endpoints (datapath.ts's LocalEp): namespace/name, identity, addresses. */
  localEps: Iterable<{ key: string; identity: number; ips: string[] }>;
  flowLog: Pick<FlowLog, 'endpoint'>;
  identityAt(ip: string): number;
  node: string;
  cluster: string;
}

export function spoofedFlows(tuples: SpoofedTuple[], at: SpoofContext): Flow[] {
  const time = new Date().toISOString();
  // veth -> endpoint once per batch (a name is hashed when shortened), not per tuple and pod
  const byVeth = new Map([...at.localEps].map((ep) => [podVeth(ep.key.slice(ep.key.indexOf('/') + 1)), ep]));
  return tuples.map((t) => {
    const sender = byVeth.get(t.iface);
    const real = sender?.ips[0];
    const source: FlowEndpoint = sender && real ? { ...at.flowLog.endpoint(real, 0, sender.identity), ip: t.source } : { ip: t.source, port: 0, identity: 0 };
    return {
      time,
      verdict: 'DROPPED',
      dropReason: 'source-spoofed',
      direction: 'egress',
      protocol: /^\d+$/.test(t.protocol) ? flowProtocol(Number(t.protocol)) : t.protocol.toUpperCase(),
      source,
      destination: at.flowLog.endpoint(t.destination, 0, at.identityAt(t.destination)),
      interface: t.iface,
      node: at.node,
      cluster: at.cluster,
    } satisfies Flow;
  });
}
