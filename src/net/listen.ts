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
