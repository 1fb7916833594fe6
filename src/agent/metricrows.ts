/**
 * Rows of the agent's metrics that map counters read elsewhere to metric labels (metrics.ts reads them at
 * scrape time): native counters by policy verdict and by table pressure, and the route table's counters.
 * Names and labels: docs/metrics.md.
 */
import type { RouteTableStats } from './routetable.js';

/** Native counters that are policy verdicts, by verdict label. */
export const VERDICTS: Record<string, string> = {
  policy_forwarded_new_flows: 'forwarded',
  drop_policy_denied: 'denied',
  drop_policy_default_deny: 'default-deny',
  policy_redirected_flows: 'redirected',
};

/** Native counters of table pressure: [table, event, counter]. */
export const CONNTRACK_PRESSURE: Array<[string, string, string]> = [
  ['conntrack', 'evicted', 'conntrack_evicted'],
  ['conntrack', 'sweep', 'conntrack_eviction_sweeps'],
  ['conntrack', 'quota-full', 'conntrack_quota_full'],
  ['conntrack', 'table-full', 'conntrack_table_full'],
  ['conntrack', 'source-full', 'conntrack_source_full'],
  ['conntrack', 'inbound-full', 'conntrack_inbound_full'],
  ['conntrack', 'destination-full', 'conntrack_destination_full'],
  ['service-nat', 'evicted', 'service_nat_evicted'],
  ['service-nat', 'sweep', 'service_nat_quota_sweeps'],
  ['service-nat', 'quota-full', 'service_nat_quota_full'],
  ['service-nat', 'table-full', 'service_nat_full'],
];

/** Native counters that are a metric of their own, without labels: [metric, help, counter]. */
export const NATIVE_COUNTERS: Array<[string, string, string]> = [
  ['wiremesh_policy_icmp_unrecorded_total', "Allowed ICMP no conntrack entry tracks (an unsolicited answer, a redirect, an error policy allows) of a new tuple left without a flow record and not counted as a new flow: its sender's budget (64 new tuples a minute) or all senders' rate (2,048 a second, pods apart from the rest) was spent (native/src/policy/icmprecord.h). Its packets still pass by policy.", 'policy_icmp_unrecorded'],
  ['wiremesh_endpoint_roam_refused_total', "Authenticated messages (transport and handshakes) from a source outside the peer node's record addresses: received, but the peer's endpoint was not moved there (a spoofed source must not redirect our traffic for it; docs/security.md).", 'endpoint_roam_refused'],
];

/** Route-table counters (RouteTableStats field): [metric, help, field]. */
export const ROUTE_COUNTERS: Array<[string, string, keyof RouteTableStats]> = [
  ['wiremesh_route_batches_total', 'Route-table writes: `ip -force -batch` runs started (each carries every route change made since the last).', 'batches'],
  ['wiremesh_route_changes_total', 'Route changes (route replace/del lines) sent in `ip -batch` runs.', 'ops'],
  ['wiremesh_route_batch_failures_total', '`ip -batch` runs that failed as a whole (killed after 30 s, a signal, no process, an unreadable answer): every line retried.', 'failedRuns'],
  ['wiremesh_route_change_failures_total', 'Route changes that failed (a line error, or every line of a failed run), each retried from the claims.', 'failedOps'],
];
