/**
 * The mirror's local write as one raw etcd Txn (issue 16: ~20 % of kvstoremesh's CPU per copied write was
 * etcd3's write machinery: its builder objects, a compare that always holds to get a batch at all, proto-loader
 * serialising plain objects, and a decoded TxnResponse nobody reads). Here the TxnRequest is encoded with
 * protobufjs from the keys and values as they are, sent on etcd3's grpc client for the KV service (same
 * channel, credentials, auth token, host circuit breaker) inside etcd3's own retry policy (connectEtcd's
 * faultHandling.global: the auth-revision race and recoverable errors), and the response is not decoded: a Txn
 * without compares always succeeds when the call does.
 *
 * Bounds: at most MAX_TXN_OPS operations and MAX_TXN_BYTES bytes (the callers' batches, mirrorwriter.ts); each
 * call has a deadline of `timeoutMs` (10 s), after which it fails (DEADLINE_EXCEEDED: not retried, nor counted
 * against the host, under connectEtcd's isHostFailure) and the caller retries the batch. Errors: etcd's refusal
 * as etcd3 casts it (castGrpcError); an invalid auth token is dropped and the Txn sent once more at once with a
 * new one (at most two attempts per call for that error).
 */
import { castGrpcError, EtcdInvalidAuthTokenError, type Etcd3 } from 'etcd3';
import { encodeMessage, etcdPool, rpc } from './etcdproto.js';

const TxnRequest = rpc.lookupType('etcdserverpb.TxnRequest');

/** Puts (a value) and deletes (null), in order (mirrorwriter.ts's MirrorOps). */
type Ops = ReadonlyArray<readonly [key: string, value: string | null]>;

/**
 * A TxnRequest without compares whose success branch is `ops`, in order; with `lease` (etcd's lease ID, an int64 as
 * a decimal string, as etcd3's Lease.grant gives it), every put is under that lease.
 */
export function encodeTxn(ops: Ops, lease?: string): Buffer {
  const put = (k: string, v: string) => (lease === undefined ? { key: Buffer.from(k), value: Buffer.from(v) } : { key: Buffer.from(k), value: Buffer.from(v), lease });
  const success = ops.map(([k, v]) => (v === null ? { request_delete_range: { key: Buffer.from(k) } } : { request_put: put(k, v) }));
  return encodeMessage(TxnRequest, { success });
}

const raw = (b: Buffer) => b;

/**
 * A writer of raw Txns on `etcd`'s connection: resolves when etcd applied `ops`, rejects with etcd's error. An
 * invalid auth token (it expired, or etcd restarted) is dropped and the Txn sent once more right away with a
 * fresh one, as etcd3's exec does: the retry policy does not retry that error, so the batch would fail. `lease`:
 * the puts are under that lease (encodeTxn).
 */
export function rawTxnWriter(etcd: Etcd3, timeoutMs = 10_000): (ops: Ops, lease?: string) => Promise<void> {
  const pool = etcdPool(etcd);
  const send = (body: Buffer): Promise<void> =>
    pool.globalPolicy.execute(() =>
      pool.withConnection(
        'KV',
        ({ client, metadata }) =>
          new Promise<void>((resolve, reject) => {
            client.makeUnaryRequest('/etcdserverpb.KV/Txn', raw, raw, body, metadata, { deadline: Date.now() + timeoutMs }, (err) => {
              if (!err) return resolve();
              const cast = castGrpcError(err);
              if (cast instanceof EtcdInvalidAuthTokenError) pool.authenticator.invalidateMetadata();
              reject(cast);
            });
          }),
      ),
    );
  return (ops, lease) => {
    const body = encodeTxn(ops, lease);
    return send(body).catch((err: unknown) => {
      if (err instanceof EtcdInvalidAuthTokenError) return send(body);
      throw err;
    });
  };
}
