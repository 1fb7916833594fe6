/**
 * Red team s15, the agent API's flow stream (GET /v1/flows?follow=1). Principals: a pod that makes flow records
 * (its denied packets: up to the native ring's 16,384 per 100 ms drain) and a follower that stops reading (an
 * operator's `wiremesh observe --follow` in a paused terminal or behind `less`). Oracle: the security stance's
 * "bounded everything (queues)", and Hubble's observer, which drops events for a slow client and reports them as
 * lost rather than buffering them. Before s15 every flow was written into the response for the stalled follower:
 * 60 batches of 1,000 flows left ~20 MB in the agent's heap (writableLength), growing with every drain.
 * The agent here is a fake of the part api.ts reads (its datapath an EventEmitter); the socket and HTTP are real.
 */
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent/agent.js';
import { FOLLOW_UNREAD_BYTES, serveApi } from '../../src/agent/api.js';
import type { Flow } from '../../src/policy/flows.js';

const dir = mkdtempSync(join(tmpdir(), 'wm-s15-flows-'));
const sock = join(dir, 'agent.sock');
const dp = Object.assign(new EventEmitter(), { flows: [] as Flow[], drainFlows: () => undefined, flowsNotSent: 0 });
let server: Server;
const responses: ServerResponse[] = [];

const flow = (i: number): Flow => ({
  time: new Date(1_800_000_000_000 + i).toISOString(),
  verdict: 'DROPPED',
  dropReason: 'policy-denied',
  direction: 'ingress',
  protocol: 'TCP',
  source: { identity: 65_792, ip: '100.65.1.10', port: 40000 + (i % 20000), cluster: 'c1', namespace: 'shop', pod: 'attacker' },
  destination: { identity: 65_793, ip: '100.65.1.20', port: 22, cluster: 'c1', namespace: 'shop', pod: 'db' },
  node: 'n1',
  cluster: 'c1',
});
const batch = (from: number, n: number) => Array.from({ length: n }, (_, i) => flow(from + i));

beforeAll(async () => {
  server = await serveApi({ datapath: dp } as unknown as Agent, sock);
  server.on('request', (_req, res: ServerResponse) => responses.push(res));
});
afterAll(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('red team s15: a follower that stops reading the flow stream', () => {
  it('holds at most the bound (plus one drain) in the agent, then learns how many flows it missed', async () => {
    const lines: string[] = [];
    let buf = '';
    const req = request({ socketPath: sock, path: '/v1/flows?follow=1&last=0' });
    const answered = new Promise<IncomingMessage>((resolve) => req.on('response', resolve).end());
    while (!responses.length) await new Promise((r) => setTimeout(r, 5));
    const agentSide = responses[0]!;
    dp.emit('flows', batch(0, 1)); // (the head goes out with the first line)
    let sent = 1;
    const res = await answered;
    res.setEncoding('utf8');
    res.pause(); // the follower stops reading
    const one = JSON.stringify(flow(0)).length + 1;
    for (let i = 0; i < 60; i++) {
      dp.emit('flows', batch(sent, 1000));
      sent += 1000;
      await new Promise((r) => setImmediate(r));
    }
    expect(agentSide.writableLength).toBeLessThanOrEqual(FOLLOW_UNREAD_BYTES + 1000 * (one + 16));
    // it reads again: what it holds, then the count of what it missed, then the next flows
    res.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) lines.push(buf.slice(0, nl)), (buf = buf.slice(nl + 1));
    });
    res.resume();
    await new Promise<void>((resolve) => {
      const drained = () => (agentSide.writableLength === 0 ? resolve() : setTimeout(drained, 5));
      drained();
    });
    dp.emit('flows', batch(sent, 10));
    sent += 10;
    await new Promise<void>((resolve) => {
      const done = () => (lines.length > 0 && JSON.parse(lines.at(-1)!).time === flow(sent - 1).time ? resolve() : setTimeout(done, 5));
      done();
    });
    req.destroy();
    const notices = lines.filter((l) => l.startsWith('{"error":'));
    expect(notices).toHaveLength(1);
    const missed = Number(/^\{"error":"(\d+) flow records not sent/.exec(notices[0]!)![1]);
    expect(missed).toBeGreaterThan(0);
    // every flow was either sent or counted, none twice
    expect(lines.length - 1 + missed).toBe(sent);
    expect(lines.at(-11)).toBe(notices[0]);
    // and the agent counts them for its status and /metrics (wiremesh_flows_not_sent_total)
    expect(dp.flowsNotSent).toBe(missed);
  });
});
