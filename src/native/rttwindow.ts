/**
 * Windowed minimum of one peer's probe RTT, the rules of native/src/wireguard/rtt_window.h (which says why:
 * the minimum measures the path's delay, not the queueing of a loaded host) for the fake device's probe monitor.
 * RTT_WINDOW_SLOTS slots of RTT_SLOT_MS aligned on the clock keep their least sample; the value is the least of
 * them: the minimum over the samples of the last 7.5..10 s. A decrease is seen at its first sample, an increase
 * 7.5..10 s later. O(1) per sample.
 */
export const RTT_WINDOW_MS = 10_000;
export const RTT_WINDOW_SLOTS = 4;
export const RTT_SLOT_MS = RTT_WINDOW_MS / RTT_WINDOW_SLOTS;

export class RttWindow {
  /** now / RTT_SLOT_MS of the newest slot. */
  private slotIndex = 0;
  /** Least sample per slot, µs; 0 = none. */
  private readonly slots = new Array<number>(RTT_WINDOW_SLOTS).fill(0);

  /** A sample (µs, 0 is taken as 1) taken at now (monotonic ms). */
  add(now: number, rttUs: number): void {
    this.advance(now);
    const i = this.slotIndex % RTT_WINDOW_SLOTS;
    const v = Math.max(1, rttUs);
    if (this.slots[i] === 0 || v < this.slots[i]!) this.slots[i] = v;
  }

  /** The least sample of the window at now (µs), 0 when it holds none. */
  min(now: number): number {
    this.advance(now);
    let m = 0;
    for (const s of this.slots) if (s !== 0 && (m === 0 || s < m)) m = s;
    return m;
  }

  private advance(now: number): void {
    const index = Math.floor(now / RTT_SLOT_MS);
    if (index <= this.slotIndex) return;
    const passed = Math.min(index - this.slotIndex, RTT_WINDOW_SLOTS);
    for (let i = 1; i <= passed; i++) this.slots[(this.slotIndex + i) % RTT_WINDOW_SLOTS] = 0;
    this.slotIndex = index;
  }
}
