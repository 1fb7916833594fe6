/**
 * The health probe of one gateway listener (gateway-dns, src/gateway/gslb.ts).
 *
 * A bare TCP connect says nothing: the kernel completes the handshake before
 * the gateway accepts, and the gateway resets at accept a connection past its
 * bounds (GATEWAY_LIMITS) or of a service with no healthy backend, and ends
 * one whose backend accepts and closes. So a probe passes only when the
 * connection, once made, stays open, neither reset nor closed, for a settle
 * window (long enough for the gateway's pick and upstream connect to fail on a
 * nearby cluster). Anything else fails: refused, reset, closed, an error, no
 * connect within the connect timeout. What the peer sends is read and ignored
 * (a banner followed by a close fails); silence passes, since client-first
 * protocols (HTTP) say nothing until asked and the probe does not know the
 * service's protocol. Left out: a backend that fails later than the window, or
 * only once asked, still passes.
 */
import net from 'node:net';

export interface TcpProbeTimes {
  /** ms to complete the TCP connect before the probe fails. */
  connectMs: number;
  /** ms the connection must then stay open, neither reset nor closed. */
  settleMs: number;
}

/** connect + settle (800 ms) stays within gateway-dns's probe interval (1 s). */
export const TCP_PROBE_TIMES: TcpProbeTimes = { connectMs: 500, settleMs: 300 };

/** Why a probe failed (for the log), or undefined when it passed. */
export type TcpProbeFailure = 'connect timeout' | 'refused' | 'reset' | 'closed' | 'error';

/**
 * Probes host:port; resolves to undefined (healthy) or the failure. Never
 * rejects; the socket is destroyed when it resolves, at most connectMs +
 * settleMs after the call.
 */
export function probeTcp(host: string, port: number, times: TcpProbeTimes = TCP_PROBE_TIMES): Promise<TcpProbeFailure | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let timer = setTimeout(() => done('connect timeout'), times.connectMs);
    let settled = false;
    function done(failure: TcpProbeFailure | undefined): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(failure);
    }
    s.once('connect', () => {
      clearTimeout(timer);
      timer = setTimeout(() => done(undefined), times.settleMs);
    });
    s.resume(); // read what the peer says, so that a FIN behind it is seen
    s.once('end', () => done('closed'));
    s.once('close', () => done('closed'));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : 'error'));
  });
}
