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
    s.unref(); // a probe never holds the process (stop() does not wait for one under way)
    // Each timer lets I/O already pending run first (setImmediate): after the event loop was blocked, the timer and
    // the connect (or the close) are both due, and the timer alone would decide against what happened on the wire.
    const after = (ms: number, f: () => void) => setTimeout(() => setImmediate(f).unref(), ms).unref();
    let timer = after(times.connectMs, () => s.connecting && done('connect timeout'));
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
      timer = after(times.settleMs, () => done(undefined));
    });
    s.resume(); // read what the peer says, so that a FIN behind it is seen
    s.once('end', () => done('closed'));
    s.once('close', () => done('closed'));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : 'error'));
  });
}

/**
 * A listener's health as gateway-dns keeps it: `healthy`, and `softFails`, the soft failures in a row since its
 * last pass.
 */
export interface ListenerHealth {
  healthy: boolean;
  softFails: number;
}

/**
 * Soft failures in a row that drop a healthy listener (3: 3 s at one probe a second). A gateway gives each
 * connection one backend; when one of its backends accepts and closes, some probes fail and the others pass,
 * and dropping the gateway on one failure would make it flap in and out of the answers every second. A gateway
 * that fails every connection (at its bound, no backend, every backend closing) is dropped after 3 s.
 */
export const SOFT_FAILS_TO_DROP = 3;

/**
 * The health after one probe (failure undefined: it passed). A pass makes the listener healthy at once. A hard
 * failure ('refused', 'connect timeout': nothing listens, or the node is gone) drops it at once, as does any
 * failure of a listener not yet seen healthy (fail closed). A soft one ('reset', 'closed', 'error': the gateway
 * answered, then ended the connection) drops a healthy listener only at the SOFT_FAILS_TO_DROP-th in a row.
 */
export function listenerHealth(before: ListenerHealth | undefined, failure: TcpProbeFailure | undefined): ListenerHealth {
  if (failure === undefined) return { healthy: true, softFails: 0 };
  if (failure === 'refused' || failure === 'connect timeout' || !before?.healthy) return { healthy: false, softFails: 0 };
  const softFails = before.softFails + 1;
  return { healthy: softFails < SOFT_FAILS_TO_DROP, softFails };
}
