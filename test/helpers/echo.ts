/** TCP echo servers (tcpecho.mjs) on `port` (7000) in each pod, resolved once all listen. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../../src/testbed/netns.js';

export const ECHO = join(ROOT, 'test', 'helpers', 'tcpecho.mjs');

export function startEchoServers(pods: Array<{ netns: string; ip: string }>, port = 7000): Promise<ChildProcess[]> {
  return startPodServers(pods, (p) => [ECHO, 'server', p.ip, String(port)]);
}

/**
 * Runs `node <args>` in each pod, one after another, each resolved once it
 * writes its first line to stderr (the helpers' "listening").
 */
export async function startPodServers<P extends { netns: string }>(pods: P[], args: (p: P) => string[]): Promise<ChildProcess[]> {
  const servers: ChildProcess[] = [];
  for (const p of pods) {
    const s = spawn('ip', ['netns', 'exec', p.netns, process.execPath, ...args(p)], { stdio: ['ignore', 'ignore', 'pipe'] });
    servers.push(s);
    await new Promise<void>((r) => s.stderr!.once('data', () => r()));
  }
  return servers;
}
