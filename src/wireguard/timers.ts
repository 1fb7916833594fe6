/**
 * Per-peer protocol timers (whitepaper §6), as a pure state machine.
 *
 * wireguard-go arms a timer on every packet event. We cannot afford a callback
 * per packet, so the native data path records when the events happened (last
 * data sent/received, first unanswered send or receive) and the device calls
 * tick() a few times a second with those timestamps. Everything here is a
 * function of (timestamps, now), so tests drive it with a fake clock.
 */
export const REKEY_AFTER_TIME_MS = 120_000;
export const REJECT_AFTER_TIME_MS = 180_000;
export const REKEY_ATTEMPT_TIME_MS = 90_000;
export const REKEY_TIMEOUT_MS = 5_000;
export const KEEPALIVE_TIMEOUT_MS = 10_000;
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME_MS / REKEY_TIMEOUT_MS; // 18
export const ZERO_KEYS_AFTER_MS = REJECT_AFTER_TIME_MS * 3; // 540 s
export const MAX_JITTER_MS = 334;

/** What the data path observed, in monotonic ms (0 = never). */
export interface TrafficTimes {
  lastAuthSentMs: number;
  lastAuthRecvMs: number;
  /** First data packet sent since anything authenticated arrived. */
  sentUnansweredMs: number;
  /** First data packet received since anything was sent. */
  recvUnansweredMs: number;
}

export type TimerAction =
  | 'retransmit-initiation' // handshake retry (isRetry)
  | 'initiate' // a new handshake: data went unanswered
  | 'keepalive' // passive keepalive or persistent keepalive
  | 'give-up' // RekeyAttemptTime exhausted: drop staged packets
  | 'zero-keys'; // 540 s without a new session: wipe keys

/** Up to MAX_JITTER_MS, uniform; one function for every peer (a default closure per peer cost 56 B each). */
const randomJitter = (): number => Math.random() * MAX_JITTER_MS;

export class PeerTimers {
  /** Seconds; 0 disables persistent keepalive. */
  persistentKeepaliveS = 0;
  handshakeAttempts = 0;
  private retransmitAtMs: number | undefined;
  private zeroAtMs: number | undefined;
  private actedSentUnanswered = 0;
  private actedRecvUnanswered = 0;
  private lastPersistentMs: number;

  constructor(nowMs: number, private readonly jitter: () => number = randomJitter) {
    this.lastPersistentMs = nowMs;
  }

  /** An initiation went out (first or retry). */
  handshakeInitiated(nowMs: number): void {
    this.retransmitAtMs = nowMs + REKEY_TIMEOUT_MS + this.jitter();
  }

  /** The initiator consumed a response, or the responder's keypair was confirmed. */
  handshakeComplete(): void {
    this.retransmitAtMs = undefined;
    this.handshakeAttempts = 0;
  }

  /** New transport keys exist: keys must be wiped if no newer ones come in 540 s. */
  sessionDerived(nowMs: number): void {
    this.zeroAtMs = nowMs + ZERO_KEYS_AFTER_MS;
  }

  /** The persistent keepalive interval changed: count from now. */
  persistentKeepaliveSet(seconds: number, nowMs: number): void {
    this.persistentKeepaliveS = seconds;
    this.lastPersistentMs = nowMs;
  }

  /** Something here can fire without traffic: a retransmit, key zeroing, persistent keepalive. */
  get armed(): boolean {
    return this.retransmitAtMs !== undefined || this.zeroAtMs !== undefined || this.persistentKeepaliveS > 0;
  }

  get retransmitPending(): boolean {
    return this.retransmitAtMs !== undefined;
  }

  stop(): void {
    this.retransmitAtMs = undefined;
    this.zeroAtMs = undefined;
  }

  tick(nowMs: number, t: TrafficTimes): TimerAction[] {
    const actions: TimerAction[] = [];
    if (this.retransmitAtMs !== undefined && nowMs >= this.retransmitAtMs) {
      // As wireguard-go and the kernel: give up only once the count has passed MaxTimerHandshakes, so an
      // unanswered handshake is sent MaxTimerHandshakes + 2 = 20 times (the first and 19 retransmissions).
      if (this.handshakeAttempts > MAX_TIMER_HANDSHAKES) {
        this.retransmitAtMs = undefined;
        actions.push('give-up');
        if (this.zeroAtMs === undefined) this.zeroAtMs = nowMs + ZERO_KEYS_AFTER_MS;
      } else {
        this.handshakeAttempts++;
        this.retransmitAtMs = undefined; // re-armed by handshakeInitiated()
        actions.push('retransmit-initiation');
      }
    }
    if (
      t.sentUnansweredMs !== 0 &&
      t.sentUnansweredMs !== this.actedSentUnanswered &&
      nowMs - t.sentUnansweredMs >= KEEPALIVE_TIMEOUT_MS + REKEY_TIMEOUT_MS
    ) {
      this.actedSentUnanswered = t.sentUnansweredMs;
      actions.push('initiate');
    }
    let keepalive = false;
    if (
      t.recvUnansweredMs !== 0 &&
      t.recvUnansweredMs !== this.actedRecvUnanswered &&
      nowMs - t.recvUnansweredMs >= KEEPALIVE_TIMEOUT_MS
    ) {
      this.actedRecvUnanswered = t.recvUnansweredMs;
      keepalive = true;
    }
    if (this.persistentKeepaliveS > 0) {
      const last = Math.max(t.lastAuthSentMs, t.lastAuthRecvMs, this.lastPersistentMs);
      if (nowMs - last >= this.persistentKeepaliveS * 1000) {
        this.lastPersistentMs = nowMs;
        keepalive = true;
      }
    }
    if (keepalive) actions.push('keepalive');
    if (this.zeroAtMs !== undefined && nowMs >= this.zeroAtMs) {
      this.zeroAtMs = undefined;
      actions.push('zero-keys');
    }
    return actions;
  }
}
