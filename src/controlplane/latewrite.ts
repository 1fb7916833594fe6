/**
 * A local etcd write that did not answer within its deadline (TxnCoalescer): it was given up on, not cancelled,
 * so it may still land. Its writer must not take the rejection for "not applied": the write is retried like a
 * failed one, and once `landing` settled, what it may have overwritten is written again (BatchedWriter).
 */
export class LateWriteError extends Error {
  /**
   * deadlineMs: the deadline it outran (ms); landing: settles (never rejects) once the write did, either way:
   * from then on it can no longer overwrite anything.
   */
  constructor(
    readonly deadlineMs: number,
    readonly landing: Promise<void>,
  ) {
    super(`local etcd write outran its ${deadlineMs} ms deadline (it may still land)`);
    this.name = 'LateWriteError';
  }
}
