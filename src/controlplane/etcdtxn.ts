/**
 * The mirror's local write as one raw etcd Txn (issue 16: ~20 % of kvstoremesh's CPU per copied write was
 * etcd3's write machinery: its builder objects, a compare that always holds to get a batch at all, proto-loader
 * serialising plain objects, and a decoded TxnResponse nobody reads). Here the TxnRequest is encoded with
 * protobufjs from the keys and values as they are, sent on etcd3's grpc client for the KV service (same
 * channel, credentials, auth token, host circuit breaker) inside etcd3's own retry policy (connectEtcd's
 * faultHandling.global: the auth-revision race and recoverable errors), and the response is not decoded: a Txn
 * without compares always succeeds when the call does; one with fences (fence.ts: one MOD == compare each) reads
 * only the response's top-level `succeeded` (txnSucceeded), and rejects with FencedError when it is false.
 *
 * Bounds: at most MAX_TXN_OPS operations and MAX_TXN_BYTES bytes (the callers' batches, mirrorwriter.ts); each
 * call has a deadline of `timeoutMs` (10 s), after which it fails (DEADLINE_EXCEEDED: not retried, nor counted
 * against the host, under connectEtcd's isHostFailure) and the caller retries the batch. Errors: etcd's refusal
 * as etcd3 casts it (castGrpcError); an invalid auth token is dropped and the Txn sent once more at once with a
 * new one (at most two attempts per call for that error).
 */
import { castGrpcError, EtcdInvalidAuthTokenError, type Etcd3 } from 'etcd3';
import protobuf from 'protobufjs';
import { encodeMessage, etcdPool, rpc } from './etcdproto.js';
import { FencedError, type Fence } from './fence.js';

const TxnRequest = rpc.lookupType('etcdserverpb.TxnRequest');
/** Compare's enums as numbers: encode() writes an enum field as given (a name would be encoded as 0, Version). */
const EQUAL = rpc.lookupEnum('etcdserverpb.Compare.CompareResult').values.Equal!;
const MOD = rpc.lookupEnum('etcdserverpb.Compare.CompareTarget').values.Mod!;

/** Puts (a value) and deletes (null), in order (mirrorwriter.ts's MirrorOps). */
type Ops = ReadonlyArray<readonly [key: string, value: string | null]>;

/**
 * A TxnRequest whose success branch is `ops`, in order; with `lease` (etcd's lease ID, an int64 as a decimal
 * string, as etcd3's Lease.grant gives it), every put is under that lease; with `fences`, applied only while each
 * fence's key still has its mod revision (compare MOD ==; the failure branch is empty).
 */
export function encodeTxn(ops: Ops, lease?: string, fences: readonly Fence[] = []): Buffer {
  const put = (k: string, v: string) => (lease === undefined ? { key: Buffer.from(k), value: Buffer.from(v) } : { key: Buffer.from(k), value: Buffer.from(v), lease });
  const success = ops.map(([k, v]) => (v === null ? { request_delete_range: { key: Buffer.from(k) } } : { request_put: put(k, v) }));
  if (fences.length === 0) return encodeMessage(TxnRequest, { success });
  const compare = fences.map((f) => ({ result: EQUAL, target: MOD, key: Buffer.from(f.key), mod_revision: f.revision }));
  return encodeMessage(TxnRequest, { compare, success });
}

/**
 * A TxnResponse's `succeeded` (field 2), read without decoding the rest: etcd writes the header (field 1) first and
 * leaves `succeeded` out when false (proto3), so the scan stops at field 2, or skips to the end when it is absent.
 */
export function txnSucceeded(response: Buffer): boolean {
  const r = protobuf.Reader.create(response);
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 2) return r.bool();
    r.skipType(tag & 7);
  }
  return false;
}

const raw = (b: Buffer) => b;

/**
 * A writer of raw Txns on `etcd`'s connection: resolves when etcd applied `ops`, rejects with etcd's error, or
 * with FencedError when a fence did not hold (nothing applied). An invalid auth token (it expired, or etcd
 * restarted) is dropped and the Txn sent once more right away with a fresh one, as etcd3's exec does: the retry
 * policy does not retry that error, so the batch would fail. `lease`: the puts are under that lease; `fences`:
 * compared (encodeTxn).
 */
export function rawTxnWriter(etcd: Etcd3, timeoutMs = 10_000): (ops: Ops, lease?: string, fences?: readonly Fence[]) => Promise<void> {
  const pool = etcdPool(etcd);
  const send = (body: Buffer): Promise<Buffer | undefined> =>
    pool.globalPolicy.execute(() =>
      pool.withConnection(
        'KV',
        ({ client, metadata }) =>
          new Promise<Buffer | undefined>((resolve, reject) => {
            client.makeUnaryRequest('/etcdserverpb.KV/Txn', raw, raw, body, metadata, { deadline: Date.now() + timeoutMs }, (err, response?: Buffer) => {
              if (!err) return resolve(response);
              const cast = castGrpcError(err);
              if (cast instanceof EtcdInvalidAuthTokenError) pool.authenticator.invalidateMetadata();
              reject(cast);
            });
          }),
      ),
    );
  return async (ops, lease, fences = []) => {
    const body = encodeTxn(ops, lease, fences);
    const response = await send(body).catch((err: unknown) => {
      if (err instanceof EtcdInvalidAuthTokenError) return send(body);
      throw err;
    });
    if (fences.length > 0 && !txnSucceeded(response ?? Buffer.alloc(0))) throw new FencedError(fences);
  };
}
