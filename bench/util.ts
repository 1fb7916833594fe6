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
