/**
 * The connections a TCP listener holds at once, in all and per client party (the ingress gateway and the metrics
 * listener share it). Its clients are anyone who reaches the address: without a per-client bound one client
 * holding every slot (reconnecting as fast as they close) locks every other client out.
 *
 * A slot is taken at accept and given back when the socket closes; a connection past a bound is reset at once and
 * counted (`refused`). The caller names the party a socket counts against (the gateway's gatewayClientOf: an IPv4
 * address, an IPv6 /64; the metrics listener's metricsClientOf: one address, as pods share a /64). Memory: one map
 * entry per party with an open connection, so at most maxConnections.
 */
import type { Socket } from 'node:net';
import { KeyCounts } from './keycounts.js';

export interface ClientLimits {
  /** Connections open at once, over all clients. */
  maxConnections: number;
  /** Connections open at once from one client party. */
  maxPerClient: number;
}

export type RefusalReason = 'connection bound' | 'per-client connection bound';

export class ClientBounds {
  /** Client sockets open now. */
  open = 0;
  /** Connections reset at accept since the start, a bound having been reached. */
  refused = 0;
  private readonly openPerClient = new KeyCounts();

  constructor(private readonly limits: ClientLimits) {}

  /** Connections the party holds now (0 when none). */
  of(client: string): number {
    return this.openPerClient.of(client);
  }

  /**
   * Takes a slot for a newly accepted socket of `client`: undefined when taken (given back on the socket's
   * 'close'), else the bound that refused it; the refused socket is reset (RST, no FIN handshake) and counted.
   */
  admit(socket: Socket, client: string): RefusalReason | undefined {
    const mine = this.of(client);
    const reason = this.open >= this.limits.maxConnections ? 'connection bound' : mine >= this.limits.maxPerClient ? 'per-client connection bound' : undefined;
    if (reason) {
      this.refused++;
      socket.on('error', () => undefined);
      socket.resetAndDestroy();
      return reason;
    }
    this.open++;
    this.openPerClient.add(client);
    socket.once('close', () => {
      this.open--;
      this.openPerClient.remove(client);
    });
    return undefined;
  }
}
