/**
 * A coalesced write that was never sent (TxnCoalescer): after a merged transaction failed, its members are retried
 * alone one after the other, and once one of them outran its deadline (a hung etcd) the members after it fail with
 * this instead of being sent. Nothing of it reached etcd, so nothing of it can land later: unlike a LateWriteError
 * there is no landing to wait for (waiting on the other member's landing pinned the writer, or a purge, on a call
 * etcd may never answer: review s6fix-r2 #2); and no write of it was refused, so its writer retries it as it was
 * (not alone).
 */
export class UnsentWriteError extends Error {
  /** deadlineMs: the deadline the member before it outran (ms). */
  constructor(readonly deadlineMs: number) {
    super(`local etcd write not sent: the transaction before it outran its ${deadlineMs} ms deadline`);
    this.name = 'UnsentWriteError';
  }
}
