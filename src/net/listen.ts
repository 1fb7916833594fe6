/** server.listen as a promise that rejects on the listen error (EADDRINUSE, EADDRNOTAVAIL) instead of throwing it later. */
import type { Server } from 'node:net';

export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Listens on a UNIX socket that only the owner may use: the socket file is
 * created under umask 077, so it never exists with wider permissions (a chmod
 * after listen() leaves a window in which anyone may connect). Node binds a
 * pipe synchronously inside listen(), so the process-wide umask is restored
 * before any other code runs.
 */
export function listenPrivate(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const old = process.umask(0o077);
    try {
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
}
