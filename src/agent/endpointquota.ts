/**
 * The bound on one node's admitted endpoints (docs/security.md, Bounds). A node speaks only for its own
 * endpoints (RBAC, and admission files each under its key's node), but without a bound a node with its own
 * credentials could register any number of them, each entering every agent's ipcache, policy maps and
 * services. Admission asks here whether an endpoint of a node that holds none admitted yet fits; one that
 * does not is refused (`budget`) and held back, alone: the bound is per node, so no other node's endpoints
 * are affected by it.
 *
 * Which ones: an endpoint already admitted is never displaced by a newer one (its pod keeps working); one
 * that arrives while its node is at the bound waits, in the order it was first held back, and the one that
 * waited longest is admitted when room frees (one of the node's admitted endpoints withdrawn or deleted).
 * An agent sees the records in etcd's key order after a (re)start and in write order when live, so two
 * agents may admit different endpoints of a node over its bound; that order is the over-bound node's own
 * writes and nothing any other node writes.
 *
 * The effective bound of a node is also its pod CIDRs' size: an endpoint key names its address, which must
 * lie inside them (a /24 holds at most 256). Cost: O(1) per endpoint admitted, withdrawn, held back or
 * released; memory: one set entry per endpoint held back (an entry of the candidates admission holds anyway); the
 * counts of admitted endpoints are the endpoint table's (EndpointStore.admittedOfNodeCount).
 */
import { ConfigError } from '../errors.js';

/** Kubernetes' default max pods per node is 110, Cilium's IPAM gives a node a /24 (256): 1024 leaves room. */
export const DEFAULT_MAX_ENDPOINTS_PER_NODE = 1024;

/**
 * The agent API's side of the bound (registration.ts): every agent admits at most `max` of a node's addresses,
 * so a local endpoint that would take this node past it is refused here (ConfigError on `ips`) rather than held
 * back everywhere. Only a request that raises the count past it: a node already over (bound lowered, endpoints
 * from the state file) may still relabel or re-add what it publishes, or shrink. local: this node's endpoints by
 * key; key/ips: the endpoint being added or replaced.
 */
export function checkPublishBound(local: ReadonlyMap<string, { ips: readonly string[] }>, key: string, ips: readonly string[], max: number): void {
  const before = new Set([...local.values()].flatMap((e) => e.ips)).size;
  const published = new Set([...local].flatMap(([k, e]) => (k === key ? [] : e.ips)).concat(ips)).size;
  if (published > max && published > before)
    throw new ConfigError('ips', `this node would publish ${published} endpoint addresses, over admission.maxEndpointsPerNode (${max}): every agent would hold the rest back`);
}

export class EndpointQuota {
  /** Endpoint keys held back at the bound per node id, in the order they were first held back. */
  private readonly held = new Map<string, Waiting>();
  /** Held-back keys per origin cluster (status, metrics). */
  private readonly heldPerCluster = new Map<string, number>();

  /**
   * The detail of every refusal for the bound, one string for all (the key names the node): a text naming the
   * node, built per refusal, is garbage per re-check of every endpoint held back.
   */
  readonly refusal: string;

  /**
   * `max`: admitted endpoints per node, ≥ 1 (agent config `admission.maxEndpointsPerNode`). `admittedOf`: how many
   * endpoints of a node id ("cluster/node") are admitted now, read from the table that holds them (admission's:
   * EndpointStore.admittedOfNodeCount; issue 16: no count of its own per node).
   */
  constructor(
    readonly max: number,
    private readonly admittedOf: (nodeId: string) => number,
  ) {
    this.refusal = `its node holds ${max} endpoints, its bound (admission.maxEndpointsPerNode): waits for room`;
  }

  /** Whether any endpoint is held back (callers skip `release` otherwise). */
  get holding(): boolean {
    return this.held.size > 0;
  }

  /** Whether one more endpoint of node `nodeId` fits. */
  fits(nodeId: string): boolean {
    return this.admittedOf(nodeId) < this.max;
  }

  /**
   * Endpoint `key` of `nodeId` was refused for the bound: it waits (keeps its place if it did). True when it was
   * not waiting yet (admission reports the refusal then, once: being held back is its mark of reported).
   */
  holdBack(nodeId: string, key: string): boolean {
    let s = this.held.get(nodeId);
    if (!s) this.held.set(nodeId, (s = new Waiting()));
    if (!s.add(key)) return false;
    const cluster = clusterOf(nodeId);
    this.heldPerCluster.set(cluster, (this.heldPerCluster.get(cluster) ?? 0) + 1);
    return true;
  }

  /** `key` waits no more (admitted, refused for another reason, waiting on its node, or deleted). */
  release(nodeId: string, key: string): void {
    const s = this.held.get(nodeId);
    if (!s?.delete(key)) return;
    this.released(nodeId, s);
  }

  private released(nodeId: string, s: Waiting): void {
    if (s.size === 0) this.held.delete(nodeId);
    const cluster = clusterOf(nodeId);
    const n = (this.heldPerCluster.get(cluster) ?? 0) - 1;
    if (n > 0) this.heldPerCluster.set(cluster, n);
    else this.heldPerCluster.delete(cluster);
  }

  /** The key of `nodeId` that waited longest, taken off the list (the caller evaluates it again), while there is room. */
  next(nodeId: string): string | undefined {
    if (!this.fits(nodeId)) return undefined;
    const s = this.held.get(nodeId);
    const k = s?.shift();
    if (k !== undefined) this.released(nodeId, s!);
    return k;
  }

  /** Status: the bound, endpoints held back per origin cluster, and the nodes holding most back (≤ 20). */
  status(): EndpointQuotaStatus {
    const nodes = [...this.held].sort((a, b) => b[1].size - a[1].size || (a[0] < b[0] ? -1 : 1)).slice(0, 20);
    return {
      maxEndpointsPerNode: this.max,
      heldBack: Object.fromEntries(this.heldPerCluster),
      nodesOverBound: nodes.map(([node, s]) => ({ node, admitted: this.admittedOf(node), heldBack: s.size })),
    };
  }
}

/** GET /v1/status `admission`. */
export interface EndpointQuotaStatus {
  maxEndpointsPerNode: number;
  /** Endpoints refused for their node's bound and waiting for room, by origin cluster. */
  heldBack: Record<string, number>;
  /** The nodes with endpoints held back, most first (at most 20): "cluster/node", admitted and held-back counts. */
  nodesOverBound: Array<{ node: string; admitted: number; heldBack: number }>;
}

function clusterOf(nodeId: string): string {
  return nodeId.slice(0, nodeId.indexOf('/'));
}

/**
 * Keys in the order they were added, with O(1) add, delete and shift (amortised). Not a Set: taking a Set's first
 * key walks the deleted slots at its front (V8's ordered table keeps them until it shrinks), so a node whose
 * held-back endpoints are admitted one by one from the front cost O(held) per admission. Here the order is an
 * array read from `head`, each key's place a number: an entry whose key was deleted (or added again since, at a
 * later place) is skipped, and the array is rebuilt from the live keys once it holds twice as many entries as them.
 */
class Waiting {
  private readonly places = new Map<string, number>();
  private keys: string[] = [];
  private seqs: number[] = [];
  private head = 0;
  private seq = 0;

  get size(): number {
    return this.places.size;
  }

  /** False when `key` is already in. */
  add(key: string): boolean {
    if (this.places.has(key)) return false;
    this.places.set(key, this.seq);
    this.keys.push(key);
    this.seqs.push(this.seq++);
    return true;
  }

  delete(key: string): boolean {
    if (!this.places.delete(key)) return false;
    this.compact();
    return true;
  }

  /** The key added first of those in, taken out. */
  shift(): string | undefined {
    while (this.head < this.keys.length) {
      const k = this.keys[this.head]!;
      const at = this.seqs[this.head++]!;
      if (this.places.get(k) !== at) continue;
      this.places.delete(k);
      this.compact();
      return k;
    }
    return undefined;
  }

  private compact(): void {
    if (this.keys.length < 2 * this.places.size + 64) return;
    const keys: string[] = [];
    const seqs: number[] = [];
    for (let i = this.head; i < this.keys.length; i++)
      if (this.places.get(this.keys[i]!) === this.seqs[i]) {
        keys.push(this.keys[i]!);
        seqs.push(this.seqs[i]!);
      }
    this.keys = keys;
    this.seqs = seqs;
    this.head = 0;
  }
}
