/** TCP echo servers (tcpecho.mjs) on `port` (7000) in each pod, resolved once all listen. */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../../src/testbed/netns.js';
import { startPodServers } from '../../src/testbed/pod.js';

export const ECHO = join(ROOT, 'test', 'helpers', 'tcpecho.mjs');

export function startEchoServers(pods: Array<{ netns: string; ip: string }>, port = 7000): Promise<ChildProcess[]> {
  return startPodServers(pods, (p) => [ECHO, 'server', p.ip, String(port)]);
}

export { startPodServers };
