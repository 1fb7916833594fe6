/**
 * Framing on the control channel between the agent and its L7 proxy process
 * (a unix socketpair, the child's fd 3). Each frame:
 *
 *   u32 LE length of what follows (1 .. MAX_FRAME) | u8 kind | payload
 *     kind 0 (JSON):    UTF-8 JSON, one message (src/proxy/messages.ts)
 *     kind 1 (records): u32 LE rows length | rows (56-byte L7 records) | text
 *
 * Our own framing rather than Node's 'ipc' channel: Node buffers an IPC
 * message of any size before the agent sees it; here a length over MAX_FRAME
 * is refused before a byte of it is kept, so the proxy process (the less
 * trusted side) cannot make the agent hold more than one frame.
 */

export const FRAME_JSON = 0;
export const FRAME_RECORDS = 1;
/** The largest frame either side accepts (a records frame is at most 512 rows of 16 KiB heads). */
export const MAX_FRAME = 16 << 20;

export interface Frame {
  kind: number;
  payload: Buffer;
}

export class FrameError extends Error {}

export function encodeFrame(kind: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32LE(payload.length + 1, 0);
  head[4] = kind;
  return Buffer.concat([head, payload]);
}

export function jsonFrame(msg: unknown): Buffer {
  return encodeFrame(FRAME_JSON, Buffer.from(JSON.stringify(msg), 'utf8'));
}

export function recordsFrame(rows: Buffer, text: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(rows.length, 0);
  return encodeFrame(FRAME_RECORDS, Buffer.concat([len, rows, text]));
}

/** Reassembles frames from stream chunks; push() throws FrameError on a length out of bounds (the stream cannot be resynchronised). */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly max = MAX_FRAME) {}

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Frame[] = [];
    for (;;) {
      if (this.buffered < 4) return out;
      const head = this.peek(4);
      const len = head.readUInt32LE(0);
      if (len < 1 || len > this.max) throw new FrameError(`frame length ${len} (1..${this.max})`);
      if (this.buffered < 4 + len) return out;
      const whole = this.take(4 + len);
      // a copy: the payload may be kept (records), the chunk it came in need not be
      out.push({ kind: whole[4]!, payload: Buffer.from(whole.subarray(5)) });
    }
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return all.subarray(0, n);
  }
}
