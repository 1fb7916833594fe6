/** PolicyDatapath's options (datapath.ts). */
import type { EndpointRecords } from '../controlplane/endpointrecords.js';

export interface PolicyDatapathOptions {
  /** `policy.defaultLocalCluster`: a peer selector that names no cluster gets the local cluster's label (Cilium's default). */
  defaultLocalCluster: boolean;
  /** Whether the rules of `cluster` (a remote's mesh-wide policies) are enforced here. */
  enforcesPoliciesOf?: (cluster: string) => boolean;
  /** Connection tracking's bounds: entries in all, per endpoint, NAT entries per endpoint. */
  conntrack?: { maxEntries: number; perEndpoint: number; natPerEndpoint?: number };
  hostFirewall?: boolean;
  maxClusters?: 255 | 511;
  /**
   * The caller's table of endpoint records by key (issue 16: one table per endpoint, not a Map in the data path
   * beside it; the agent's: Admission.endpointRecords). It holds each record before upsertEndpoint is called with it
   * and loses it before removeEndpoint, and the caller passes the record it replaced (`previous`); the policy
   * universe reads facts in its order. Without it the data path keeps a map of its own (tests, `policy trace`).
   */
  records?: EndpointRecords;
}
