/**
 * How wiremesh connects to an etcd (its own or a remote's): endpoints, TLS, auth, keepalive, and the fault
 * handling every call goes through. kvstore.ts re-exports it (its callers import it from there).
 */
import { readFileSync } from 'node:fs';
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, retry, wrap, type IBackoff } from 'cockatiel';
import { Etcd3, GRPCDeadlineExceededError, isRecoverableError, type IOptions } from 'etcd3';
import { etcdTlsClient } from './etcdtls.js';

export interface EtcdOptions {
  endpoints: string[];
  /** PEM files for TLS; all three for mutual TLS. */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** The same as inline PEM (remote specs carry their credentials this way). */
  ca?: string;
  cert?: string;
  key?: string;
  username?: string;
  password?: string;
  dialTimeoutMs?: number;
  /**
   * HTTP/2 keepalive pings on the connection: one after timeMs without traffic, the connection (and every
   * watch on it) failed when no answer came within timeoutMs. Off by default: grpc-js judges the answer on
   * the event loop, so a process busy longer than timeoutMs in one synchronous pass would take its own stall
   * for a dead etcd (51be69b took it back from the agent). etcd refuses pings closer than 5 s
   * (--grpc-keepalive-min-time) and pings without an open stream, so timeMs ≥ 5000 and none are sent idle.
   */
  keepalive?: { timeMs: number; timeoutMs: number };
}

/**
 * etcd refuses a request with "revision of auth store is old" when users or
 * roles changed between its auth check and its apply (e.g. `clustermesh
 * node-credentials` for another node while this agent writes). The request was
 * not applied, so a retry is safe; etcd's own Go client retries it too. Without
 * this, the first endpoint registration of a node that starts while the
 * operator adds other nodes failed (the docker-compose testbed's setup job did
 * exactly that).
 */
export function isAuthRevisionRace(err: Error): boolean {
  return /revision of auth store is old/.test(err.message);
}

/**
 * What the retry policy and the host's circuit breaker take for a failure of the host: etcd3's recoverable errors
 * except a call's own deadline running out. etcd3 counts DEADLINE_EXCEEDED as recoverable: one write past its
 * deadline (rawTxnWriter's 10 s) was tried three times (each with a fresh deadline: 30 s for a 10 s budget), and
 * the three failures opened the breaker for every call of the client (kvstoremesh's mirror writes, its lease,
 * the identity collector) though the etcd answered others; a caller's budget is the caller's to act on.
 */
export function isHostFailure(err: Error): boolean {
  return isRecoverableError(err) && !(err instanceof GRPCDeadlineExceededError);
}

export function connectEtcd(o: EtcdOptions): Etcd3 {
  // Watch responses during a bulk load can be large; lists are paginated (EtcdStore.list).
  const opts: IOptions = {
    hosts: o.endpoints,
    dialTimeout: o.dialTimeoutMs ?? 3000,
    grpcOptions: {
      'grpc.max_receive_message_length': 64 << 20,
      ...(o.keepalive ? { 'grpc.keepalive_time_ms': Math.max(5000, o.keepalive.timeMs), 'grpc.keepalive_timeout_ms': o.keepalive.timeoutMs } : {}),
    },
    // etcd3's defaults (watch backoff up to 30 s, a host circuit open 5 s after
    // 3 failures) left agents 12-13 s behind a restarted etcd (npm run chaos,
    // etcd-loss); state should flow again within about a second.
    faultHandling: {
      // every call: etcd3's default (3 attempts on recoverable errors, a deadline left out: isHostFailure),
      // inside up to 20 attempts for the auth-revision race (an operator issuing many nodes' credentials bumps
      // the revision every few ms)
      global: wrap(
        retry(handleWhen(isAuthRevisionRace), { maxAttempts: 20, backoff: new ExponentialBackoff({ initialDelay: 20, maxDelay: 500 }) }),
        retry(handleWhen(isHostFailure), { maxAttempts: 3 }),
      ),
      host: () => circuitBreaker(handleWhen(isHostFailure), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
      // etcd3 calls next() on it first (it takes the factory its own default is)
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }) as unknown as IBackoff<unknown>,
    },
  };
  if (o.username) opts.auth = { username: o.username, password: o.password ?? '' };
  const ca = o.ca ? Buffer.from(o.ca) : o.caFile ? readFileSync(o.caFile) : undefined;
  if (!ca) return new Etcd3(opts);
  const cert = o.cert ? Buffer.from(o.cert) : o.certFile ? readFileSync(o.certFile) : undefined;
  const key = o.key ? Buffer.from(o.key) : o.keyFile ? readFileSync(o.keyFile) : undefined;
  // not etcd3's TLS credentials: they send an IP endpoint as the TLS server name (RFC 6066 forbids it; Node warns,
  // DEP0123). etcdtls.ts's send none for an IP and verify the certificate against the endpoint as etcd3's did
  return etcdTlsClient(opts, { ca, ...(cert ? { cert } : {}), ...(key ? { key } : {}) });
}
