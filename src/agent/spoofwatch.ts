/**
 * Flow records for the pod guard's drops (src/testbed/podguard.ts): a packet
 * from a pod's veth with a source that is not the pod's is dropped by
 * nftables before it reaches the data path, so the data path never sees it.
 * The guard's rule also adds (veth . source . destination . protocol) to a
 * dynamic nftables set (spoofed4 / spoofed6: at most SPOOF_SET_SIZE elements
 * each, every element gone 60 s after it was added); this watcher lists those
 * sets once a second and reports each element it had not seen, so one
 * spoofing tuple gives at most one record a minute, however fast it sends.
 *
 * `nft -j` output is decoded through a schema (never a cast): an answer that
 * does not decode is logged and counted, and the poll goes on.
 */
import { execFile } from 'node:child_process';
import { z } from 'zod';
import { HostError } from '../errors.js';
import { POD_GUARD_TABLE, SPOOF_SET_TIMEOUT_S } from '../testbed/podguard.js';

export interface SpoofedTuple {
  /** The pod's node-side veth. */
  iface: string;
  /** The source the pod claimed. */
  source: string;
  destination: string;
  /** `tcp`, `udp`, `icmp`, ... or the protocol number. */
  protocol: string;
}

const elemSchema = z.object({
  elem: z.object({
    val: z.object({ concat: z.tuple([z.string(), z.string(), z.string(), z.union([z.string(), z.number()])]) }),
    expires: z.number().optional(),
  }),
});
const setSchema = z.object({
  set: z.object({ family: z.string(), table: z.string(), name: z.string(), elem: z.array(z.union([elemSchema, z.unknown()])).optional() }),
});
const listSchema = z.object({ nftables: z.array(z.union([setSchema, z.unknown()])) });

/**
 * The spoofed tuples in `nft -j list sets netdev` output, each with the
 * seconds until it expires. null: no pod guard sets (the node wires its pods
 * otherwise). Throws when the answer does not decode.
 */
export function parseSpoofSets(json: unknown): Array<SpoofedTuple & { expiresS?: number }> | null {
  const listed = listSchema.safeParse(json);
  if (!listed.success) throw new HostError('WM_NFT_ANSWER', `nft -j list sets: unexpected answer (${listed.error.issues[0]?.message ?? 'invalid'})`);
  let found = false;
  const out: Array<SpoofedTuple & { expiresS?: number }> = [];
  for (const o of listed.data.nftables) {
    const s = setSchema.safeParse(o);
    if (!s.success || s.data.set.table !== POD_GUARD_TABLE || !/^spoofed[46]$/.test(s.data.set.name)) continue;
    found = true;
    for (const e of s.data.set.elem ?? []) {
      const el = elemSchema.safeParse(e);
      if (!el.success) continue;
      const [iface, source, destination, proto] = el.data.elem.val.concat;
      out.push({ iface, source, destination, protocol: String(proto), ...(el.data.elem.expires !== undefined ? { expiresS: el.data.elem.expires } : {}) });
    }
  }
  return found ? out : null;
}

/**
 * Lists the guard's sets every second (every 10 s while there are none) and
 * calls onNew with the tuples added since the last poll. Its memory: the
 * last poll's tuples, at most 2 x SPOOF_SET_SIZE (podguard.ts).
 */
export class SpoofWatch {
  private timer: NodeJS.Timeout | undefined;
  private seen = new Map<string, number>(); // tuple -> when it expires (ms)
  private busy = false;
  private idlePolls = 0;
  private lastError = '';
  /** Polls whose answer did not decode, or nft failed. */
  errors = 0;

  constructor(
    private readonly onNew: (tuples: SpoofedTuple[]) => void,
    private readonly onError: (message: string) => void,
    private readonly list: () => Promise<string> = listSets,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    if (this.busy || (this.idlePolls > 0 && this.idlePolls++ % 10 !== 0)) return;
    this.busy = true;
    try {
      await this.poll();
    } catch (err) {
      this.errors++;
      this.idlePolls = 1;
      // logged when it changes, not every 10 s (a node without nft says so once)
      if ((err as Error).message !== this.lastError) this.onError((this.lastError = (err as Error).message));
    } finally {
      this.busy = false;
    }
  }

  /** One poll (exported for tests): reports the new tuples. */
  async poll(at?: number): Promise<void> {
    const text = await this.list();
    // after the listing: a slow nft must not make every element look re-added
    const now = at ?? Date.now();
    const raw: unknown = JSON.parse(text);
    const tuples = parseSpoofSets(raw);
    this.lastError = '';
    this.idlePolls = tuples === null ? 1 : 0;
    const next = new Map<string, number>();
    const fresh: SpoofedTuple[] = [];
    for (const t of tuples ?? []) {
      const key = `${t.iface}|${t.source}|${t.destination}|${t.protocol}`;
      const expires = t.expiresS === undefined ? undefined : now + t.expiresS * 1000;
      const before = this.seen.get(key);
      // an element's expiry never moves (the rule adds, never updates): a later one is the tuple added again;
      // an element without one (an nft that does not print it) is new only when it was not listed before
      const isNew = before === undefined || (expires !== undefined && expires > before + 1500);
      if (isNew) fresh.push({ iface: t.iface, source: t.source, destination: t.destination, protocol: t.protocol });
      next.set(key, isNew ? (expires ?? now + SPOOF_SET_TIMEOUT_S * 1000) : before!);
    }
    this.seen = next;
    if (fresh.length > 0) this.onNew(fresh);
  }
}

function listSets(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('nft', ['-j', 'list', 'sets', 'netdev'], { timeout: 5000, maxBuffer: 16 << 20 }, (err, out) => (err ? reject(err) : resolve(out)));
  });
}
