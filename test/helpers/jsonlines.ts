/**
 * A long-running helper inside a network namespace that answers JSON lines:
 * each request carries an id, each answer line the same id (the conformance
 * suite's pod probers and its `policy trace` process).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export class JsonLineProcess {
  readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private seq = 0;
  private stderr = '';
  private exited: string | null = null;
  /** Resolves on the first line on stderr (the helper's "listening"/"ready"). */
  readonly ready: Promise<void>;

  constructor(netns: string, args: string[], readonly what: string) {
    this.child = spawn('ip', ['netns', 'exec', netns, process.execPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line) as { id: number };
      this.pending.get(msg.id)?.resolve(msg);
      this.pending.delete(msg.id);
    });
    this.ready = new Promise((resolve, reject) => {
      this.child.stderr!.on('data', (d) => {
        this.stderr = (this.stderr + String(d)).slice(-2000);
        resolve();
      });
      this.child.once('exit', (code) => {
        this.exited = `${what} exited (${code}): ${this.stderr.trim()}`;
        reject(new Error(this.exited));
        for (const p of this.pending.values()) p.reject(new Error(this.exited));
        this.pending.clear();
      });
    });
    this.ready.catch(() => undefined); // reported through request()
  }

  /** Sends body with a fresh id; resolves with the answer line, rejects after timeoutMs. */
  request<T>(body: Record<string, unknown>, timeoutMs: number): Promise<T> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.what}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: (v) => (clearTimeout(t), resolve(v as T)), reject: (e) => (clearTimeout(t), reject(e)) });
      this.child.stdin!.write(JSON.stringify({ ...body, id }) + '\n');
    });
  }

  stop(): void {
    if (!this.exited && this.child.pid) process.kill(this.child.pid, 'SIGKILL');
  }
}
