/** TCP echo servers (tcpecho.mjs) on `port` (7000) in each pod, resolved once all listen. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../../src/testbed/netns.js';

export const ECHO = join(ROOT, 'test', 'helpers', 'tcpecho.mjs');

export async function startEchoServers(pods: Array<{ netns: string; ip: string }>, port = 7000): Promise<ChildProcess[]> {
  const servers: ChildProcess[] = [];
  for (const p of pods) {
    const s = spawn('ip', ['netns', 'exec', p.netns, process.execPath, ECHO, 'server', p.ip, String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
    servers.push(s);
    await new Promise<void>((r) => s.stderr!.once('data', () => r()));
  }
  return servers;
}
