// ExpositionCache: one render per interval, shared while running, and a render that never settles given up on
// after maxPendingMs (review: while it was pending every request got the same promise, so the listener never
// answered again). The clock is injected: no timing threshold.
import { describe, expect, it } from 'vitest';
import { ExpositionCache } from '../../src/net/expositioncache.js';

describe('ExpositionCache', () => {
  it('regression: a render pending past maxPendingMs is dropped: the next request starts a new one', async () => {
    let t = 0;
    let calls = 0;
    const source = { contentType: 'text/plain', text: () => (++calls === 1 ? new Promise<string>(() => undefined) : Promise.resolve(`up ${calls}\n`)) };
    const cache = new ExpositionCache(source, 1000, () => t, 10_000);
    const stuck = cache.text();
    t = 9_999;
    expect(cache.text()).toBe(stuck); // shared while it may still settle
    t = 10_000;
    // before: the stuck promise again, for good
    expect(await cache.text()).toBe('up 2\n');
    expect(cache).toMatchObject({ renders: 2, stalled: 1 });
    t = 10_500;
    expect(await cache.text()).toBe('up 2\n'); // within the interval of the good render
    t = 11_000;
    expect(await cache.text()).toBe('up 3\n');
    expect(cache.stalled).toBe(1);
  });

  it("body(): one Buffer per render, shared by every answer (not a copy each: slow readers pin one render's bytes); a failure rejects it", async () => {
    let t = 0;
    let calls = 0;
    const source = { contentType: 'text/plain', text: () => (++calls === 3 ? Promise.reject(new Error('collect failed')) : Promise.resolve(`up ${calls} é\n`)) };
    const cache = new ExpositionCache(source, 1000, () => t, 10_000);
    const a = await cache.body();
    expect(a.toString('utf8')).toBe('up 1 é\n');
    expect(a.length).toBe(8); // UTF-8 bytes, not characters
    t = 999;
    expect(await cache.body()).toBe(a);
    t = 1000;
    const b = await cache.body();
    expect(b).not.toBe(a);
    expect(b.toString()).toBe('up 2 é\n');
    t = 2000;
    await expect(cache.body()).rejects.toThrow('collect failed');
    await expect(cache.text()).rejects.toThrow('collect failed'); // not retried within the interval
    expect(cache.renders).toBe(3);
  });
});
