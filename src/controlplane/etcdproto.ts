/**
 * etcd's gRPC API as the lean watch (etcdwatch.ts) and the mirror's raw Txn (etcdtxn.ts) use it: the message
 * types of the rpc.proto etcd3 ships, loaded once with protobufjs (keepCase: the field names of the .proto),
 * and the part of etcd3's connection pool they ride on.
 */
import { createRequire } from 'node:module';
import type { Client, Metadata } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
/** The etcdserverpb (and mvccpb, authpb) message types. */
export const rpc = new protobuf.Root().loadSync(require.resolve('etcd3/proto/rpc.proto'), { keepCase: true });

/** `msg` (plain fields, keepCase names) encoded as `type`, as a Buffer over protobufjs's bytes (no copy). */
export function encodeMessage(type: protobuf.Type, msg: Record<string, unknown>): Buffer {
  const u8 = type.encode(msg).finish();
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/**
 * The part of etcd3's (internal) ConnectionPool used here; etcd3 is pinned (package.json), and etcdPool checks
 * the shape so an etcd3 that changed it fails at the first call, not silently.
 */
export interface Pool {
  withConnection<T>(service: 'Watch' | 'KV', fn: (c: { resource: unknown; client: Client; metadata: Metadata }) => T): Promise<Awaited<T>>;
  markFailed(resource: unknown, err: Error): void;
  authenticator: { invalidateMetadata(): void };
  /** etcd3's retry policy around every call (connectEtcd's faultHandling.global). */
  globalPolicy: { execute<T>(fn: () => Promise<T>): Promise<T> };
}

export function etcdPool(etcd: Etcd3): Pool {
  const pool = (etcd as unknown as { pool?: Partial<Pool> }).pool;
  if (typeof pool?.withConnection !== 'function' || typeof pool.markFailed !== 'function' || typeof pool.authenticator?.invalidateMetadata !== 'function' || typeof pool.globalPolicy?.execute !== 'function')
    throw new Error('etcd3 client without the connection pool etcdproto.ts expects (etcd3 version changed?)');
  return pool as Pool;
}
