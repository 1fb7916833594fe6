/**
 * `wiremesh-wg [-f|--foreground] INTERFACE-NAME`: a drop-in for wireguard-go.
 *
 * Creates the TUN, serves UAPI at /var/run/wireguard/INTERFACE-NAME.sock and,
 * unless -f is given, continues in the background once both are ready (Node
 * cannot fork, so the parent re-executes itself in the foreground, detached,
 * and exits when the child reports ready). Exits when the interface is deleted
 * (`ip link del`, `wg-quick down`) or on SIGTERM/SIGINT.
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { createLogger } from '../log.js';
import { WireGuardDevice } from '../wireguard/device.js';
import { serveUapi } from '../wireguard/uapi.js';

const USAGE = 'Usage: wiremesh-wg [-f/--foreground] INTERFACE-NAME';
const READY_ENV = 'WIREMESH_WG_NOTIFY_READY';

export async function main(argv: string[]): Promise<number> {
  let foreground = false;
  const names: string[] = [];
  for (const a of argv) {
    if (a === '-f' || a === '--foreground') foreground = true;
    else if (a === '--version') {
      process.stdout.write('wiremesh-wg 0.1.0 (userspace WireGuard, native data path)\n');
      return 0;
    } else if (a.startsWith('-')) {
      process.stderr.write(`${USAGE}\n`);
      return 1;
    } else names.push(a);
  }
  if (names.length !== 1) {
    process.stderr.write(`${USAGE}\n`);
    return 1;
  }
  const ifname = names[0]!;
  if (!foreground && !process.env[READY_ENV]) return daemonize(ifname);

  const log = createLogger(`wiremesh-wg(${ifname})`);
  let dev: WireGuardDevice;
  try {
    dev = new WireGuardDevice({ tunName: ifname, logger: log });
  } catch (err) {
    return fail(`Failed to create TUN device: ${(err as Error).message}`);
  }
  let server;
  try {
    server = await serveUapi(dev, ifname);
  } catch (err) {
    dev.close();
    return fail(`Failed to open UAPI socket: ${(err as Error).message}`);
  }
  log.info({ tun: dev.tunName, port: dev.listenPort, gso: dev.native.gso }, 'device started');
  if (process.send) {
    process.send({ ready: true });
    process.disconnect?.();
  }
  return await new Promise<number>((resolve) => {
    const shutdown = (why: string) => {
      log.info({ why }, 'shutting down');
      clearInterval(watch);
      server.close();
      dev.close();
      resolve(0);
    };
    // The TUN read fails when the link is deleted; the poll covers a device
    // that is idle at that moment.
    dev.on('tun-closed', () => shutdown('interface deleted'));
    const watch = setInterval(() => {
      if (!existsSync(`/sys/class/net/${ifname}`)) shutdown('interface deleted');
    }, 500);
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });

  function fail(msg: string): number {
    log.error(msg);
    if (process.send) process.send({ error: msg });
    else process.stderr.write(msg + '\n');
    return 1;
  }
}

function daemonize(ifname: string): Promise<number> {
  const logFile = process.env.WIREMESH_WG_LOG_FILE;
  const errFd = logFile ? openSync(logFile, 'a') : 'ignore';
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, '-f', ifname], {
    detached: true,
    stdio: ['ignore', 'ignore', errFd, 'ipc'],
    env: { ...process.env, [READY_ENV]: '1' },
  });
  return new Promise((resolve) => {
    child.once('message', (m: { ready?: boolean; error?: string }) => {
      if (m.error) process.stderr.write(m.error + '\n');
      child.disconnect();
      child.unref();
      resolve(m.ready ? 0 : 1);
    });
    child.once('exit', (code) => resolve(code ?? 1));
  });
}
