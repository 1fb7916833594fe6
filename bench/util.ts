/** Small helpers the micro-benchmarks share: flags, full GCs, medians. */

/** The value after `--name` on the command line, or `dflt`. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

/** Four full GCs (the process runs with --expose-gc): what a heap reading after it counts is live. */
export function fullGc(): void {
  for (let i = 0; i < 4; i++) (globalThis as { gc?: () => void }).gc!();
}

/** The median of xs (the upper one of an even count). */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** Heap used plus array buffers (bytes): what a table costs, read after fullGc. */
export const used = (): number => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

/** Nanoseconds per item of `f` over `n` items. */
export const nsPer = (n: number, f: () => void): number => {
  const t = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t) / n;
};

/**
 * `rounds` readings of each build, alternating which goes first, reduced to each field's median per build (a
 * reading's fields are numbers: bytes, ns).
 */
export function alternateRounds<R extends Record<string, number>>(rounds: number, read: (which: 'this' | 'base') => R): Record<'this' | 'base', R> {
  const got: Record<'this' | 'base', R[]> = { this: [], base: [] };
  for (let r = 0; r < rounds; r++) for (const which of r % 2 ? (['base', 'this'] as const) : (['this', 'base'] as const)) got[which].push(read(which));
  const med = (which: 'this' | 'base'): R => Object.fromEntries(Object.keys(got[which][0] ?? {}).map((k) => [k, median(got[which].map((x) => x[k]!))])) as R;
  return { this: med('this'), base: med('base') };
}

/**
 * alternateRounds, then one row per build of the medians and one of this/base ratios, each starting with `name`,
 * fields in `fields` order joined by ' | '.
 */
export function compareBuilds<R extends Record<string, number>>(name: string, rounds: number, fields: readonly (keyof R)[], read: (which: 'this' | 'base') => R): void {
  const med = alternateRounds(rounds, read);
  for (const which of ['this', 'base'] as const) console.log([name, which, ...fields.map((k) => med[which][k]!.toFixed(1))].join(' | '));
  console.log([name, 'this/base', ...fields.map((k) => (med.this[k]! / med.base[k]!).toFixed(2))].join(' | '));
}
