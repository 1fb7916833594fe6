/**
 * Allowed-IPs churn (part of npm run bench:churn): the cost of replacing one
 * peer's prefixes (Device::set_allowed_ips = remove_peer + inserts) in a table
 * of P peers, each with a node address (/32) and a pod CIDR (/24), as the
 * agent programs them. Anchor in the same run: one listing of every prefix
 * (the work a remove_peer without per-peer lists would do on every call).
 * bench/allowedips-lookup.sh compares lookups and this churn between two trees.
 * Times are per operation in µs, best of 3 rounds (shared 2-vCPU machine:
 * compare within a run).
 */
import { testhooks } from '../src/native/testhooks.js';

/** The two prefixes of peer i < 16,128: node address 100.64.x.y/32 and pod CIDR 100.(65..127).z.0/24. */
function prefixes(i: number): Array<[Buffer, number]> {
  return [
    [Buffer.from([100, 64, i >> 8, i & 0xff]), 32],
    [Buffer.from([100, 65 + (i >> 8), i & 0xff, 0]), 24],
  ];
}

export interface AllowedIPsFigures {
  peers: number;
  setUs: number;
  walkUs: number;
}

export function benchAllowedIPs(peers: number, ops = 2000): AllowedIPsFigures {
  const t = new testhooks.AllowedIPs();
  const all = Array.from({ length: peers }, (_, i) => prefixes(i)); // built once: time the table, not Buffer allocation
  for (let i = 0; i < peers; i++) for (const [a, c] of all[i]!) t.insert(a, c, i);
  let x = 12345;
  const next = (): number => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) % peers);
  const round = (): number => {
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < ops; k++) {
      const p = next();
      t.removePeer(p);
      for (const [a, c] of all[p]!) t.insert(a, c, p);
    }
    return Number(process.hrtime.bigint() - t0) / 1e3 / ops;
  };
  const walkRound = (): number => {
    const n = Math.max(1, Math.floor(ops / 20));
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < n; k++) t.walk();
    return Number(process.hrtime.bigint() - t0) / 1e3 / n;
  };
  const setUs = Math.min(round(), round(), round());
  const walkUs = Math.min(walkRound(), walkRound(), walkRound());
  if (t.size() !== peers * 2) throw new Error(`table holds ${t.size()} prefixes, expected ${peers * 2}`);
  return { peers, setUs, walkUs };
}
