// The chaos runner's verdicts (src/chaos/run.ts evaluate): what counts as lost,
// recovered and broken, from a load report with known timestamps.
import { describe, expect, it } from 'vitest';
import { evaluate } from '../../src/chaos/run.js';
import type { LoadReport } from '../../src/chaos/probe.js';

const held = (name: string, error: string | null = null) => ({ name, replies: 50, error, errorAt: error ? 2500 : null, maxGapMs: 120 });

function report(failAt: number[], heldConns = [held('api1'), held('api2', 'ECONNRESET'), held('api3')]): LoadReport {
  const requests = [];
  for (let at = 0; at < 6000; at += 50) requests.push(failAt.includes(at) ? { at, ok: false, error: 'TIMEOUT' } : { at, ok: true, name: 'api1' });
  return { requests, held: heldConns };
}

describe('chaos verdicts', () => {
  const kill = { name: 'kill-node', what: 'x', affected: ['api2'], recoveryBarMs: 3000 };

  it('a kill: requests may fail until recovery within the bar; flows on the killed backend may reset', () => {
    const r = evaluate(kill, report([2050, 2300, 2900]), 2000);
    expect(r).toMatchObject({ pass: true, lost: 3, recoveryMs: 900, held: { healthy: 2, intact: 2, onAffected: 1 } });
  });

  it('fails when recovery is slower than the bar, or a flow to a healthy backend breaks', () => {
    expect(evaluate(kill, report([2050, 5500]), 2000)).toMatchObject({ pass: false, recoveryMs: 3500 });
    const broken = evaluate(kill, report([], [held('api1', 'ECONNRESET'), held('api3')]), 2000);
    expect(broken.pass).toBe(false);
    expect(broken.failures[0]).toMatch(/1 established flow\(s\) to healthy backends broke \(api1: ECONNRESET at 500 ms\)/);
  });

  it('a scenario without a recovery bar loses nothing; failures before the fault are the setup\'s fault', () => {
    const loss = { name: 'loss', what: 'x', affected: [] as string[] };
    expect(evaluate(loss, report([], [held('api1'), held('api2')]), 2000)).toMatchObject({ pass: true, lost: 0, recoveryMs: 0 });
    expect(evaluate(loss, report([3000], [held('api1')]), 2000).failures).toEqual(['1 request(s) lost (bar: none)']);
    expect(evaluate(loss, report([100], [held('api1')]), 2000).failures).toEqual(['1 request(s) failed before the fault']);
    expect(evaluate(loss, report([], [held('api1')]), 2000, { extra: 'no rekey', ok: false }).failures).toEqual(['no rekey']);
  });
});
