/**
 * What the addon mallocs per item of the agent's state (issue 16): per ipcache host entry, per WireGuard peer (its
 * struct, endpoint, roaming set, cluster identity), per allowed-IPs prefix, per policy-map entry (one remote
 * identity in one local endpoint's map). Each build's addon (DIR/build/Release/wiremesh.node) runs in a fresh
 * child process, so its malloc arenas start alike; the stages run in that order on one device with policy enabled,
 * and each reads glibc's mallinfo2 (the addon's mallocInfo) before and after:
 *   inUse  bytes malloc hands out (uordblks): what the addon's structures hold, whatever the arena's slack
 *   mmap   bytes of blocks malloc mmaps apart (≥ 128 KiB by default: large vectors, tables)
 *   rss    the process's resident bytes (tables the addon mmaps itself count only here)
 * each divided by the stage's items. Rows arrive as the agent sends them: ipcache rows in batches of 1000,
 * one call per peer and per map.
 *
 * Usage: node dist/bench/native-malloc.js [--hosts 160000] [--peers 16000] [--endpoints 10] [--identities 1000]
 *        [--rounds 3] [--base /work/main]
 * Prints per stage a row per build (medians of the rounds, which alternate the builds' order) and this/base.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg, compareBuilds } from './util.js';

/** Another build's addon, loaded by path (its types may differ from this build's). */
type Any = any;

const STAGES = ['ipcache', 'peers', 'allowedips', 'policy'] as const;
type Stage = (typeof STAGES)[number];
type Reading = Record<'inUse' | 'mmap' | 'rss', number>;

const v4 = (k: number): Buffer => Buffer.from([k >>> 24, (k >>> 16) & 255, (k >>> 8) & 255, k & 255]);

function measure(dir: string, hosts: number, peers: number, endpoints: number, identities: number): Record<Stage, Reading> {
  const addon: Any = createRequire(import.meta.url)(resolve(dir, 'build/Release/wiremesh.node'));
  const dev: Any = new addon.Device({ createTun: false });
  dev.enablePolicy();
  const read = (): Reading => {
    const m = addon.mallocInfo();
    return { inUse: m.inUseBytes, mmap: m.mmapBytes, rss: process.memoryUsage().rss };
  };
  const out = {} as Record<Stage, Reading>;
  const stage = (name: Stage, items: number, f: () => void): void => {
    const a = read();
    f();
    const b = read();
    out[name] = { inUse: (b.inUse - a.inUse) / items, mmap: (b.mmap - a.mmap) / items, rss: (b.rss - a.rss) / items };
  };
  // 100.64.0.0/10 pod addresses, identities 256.. (one per 10 endpoints, as the shape)
  stage('ipcache', hosts, () => {
    for (let i = 0; i < hosts; i += 1000) {
      const rows = Buffer.alloc(Math.min(1000, hosts - i) * 28);
      for (let j = 0; j * 28 < rows.length; j++) {
        const o = j * 28;
        rows[o] = 4;
        rows[o + 1] = 32;
        rows.writeUInt32LE(256 + ((i + j) % identities), o + 4);
        v4((100 << 24) | (64 << 16) | (i + j)).copy(rows, o + 12);
      }
      dev.ipcacheUpdate(rows, Buffer.alloc(0));
    }
  });
  const nodeAddr = (p: number): Buffer => v4((198 << 24) | (18 << 16) | (p + 1));
  stage('peers', peers, () => {
    for (let p = 1; p <= peers; p++) {
      const host = nodeAddr(p).join('.');
      dev.upsertPeer(p);
      dev.setEndpoint(p, host, 51820);
      dev.setRoaming(p, [host]);
      dev.setPeerIdentity(p, true, 2, [1 + (p % 16)]);
    }
  });
  // two prefixes a peer: its node's address and pod /24
  stage('allowedips', peers * 2, () => {
    for (let p = 1; p <= peers; p++) dev.setAllowedIPs(p, [[nodeAddr(p), 32], [v4((100 << 24) | (64 << 16) | (p << 8)), 24]]);
  });
  // every local endpoint allows TCP 8080 from each remote identity, ingress and egress
  stage('policy', endpoints * identities * 2, () => {
    const rows = Buffer.alloc(identities * 16);
    for (let i = 0; i < identities; i++) {
      rows.writeUInt32LE(256 + i, i * 16);
      rows[i * 16 + 4] = 6;
      rows.writeUInt16LE(8080, i * 16 + 6);
      rows.writeUInt16LE(8080, i * 16 + 8);
      rows.writeUInt32LE(i, i * 16 + 12);
    }
    for (let e = 1; e <= endpoints; e++) dev.setEndpointPolicy(e, 256 + e, rows, rows);
  });
  dev.close();
  return out;
}

const hosts = Number(arg('hosts', '160000'));
const peers = Number(arg('peers', '16000'));
const endpoints = Number(arg('endpoints', '10'));
const identities = Number(arg('identities', '1000'));
if (process.env.NATIVE_MALLOC_CHILD) {
  console.log(JSON.stringify(measure(process.env.NATIVE_MALLOC_CHILD, hosts, peers, endpoints, identities)));
} else {
  const here = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const dirs = { this: here, base: resolve(arg('base', '/work/main')) };
  const child = (which: 'this' | 'base'): Record<Stage, Reading> =>
    JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { env: { ...process.env, NATIVE_MALLOC_CHILD: dirs[which] }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  // one child per build and round, its stages split into rows afterwards
  const runs: Record<'this' | 'base', Array<Record<Stage, Reading>>> = { this: [], base: [] };
  const rounds = Number(arg('rounds', '3'));
  for (let r = 0; r < rounds; r++) for (const which of r % 2 ? (['base', 'this'] as const) : (['this', 'base'] as const)) runs[which].push(child(which));
  console.log(`B per item (${hosts} hosts, ${peers} peers, ${peers * 2} prefixes, ${endpoints} x ${identities} x 2 policy entries) | inUse | mmap | rss`);
  for (const s of STAGES) {
    const seen = { this: 0, base: 0 };
    compareBuilds(s, rounds, ['inUse', 'mmap', 'rss'], (which) => runs[which][seen[which]++]![s]);
  }
}
