/**
 * Whether the agent was started with the memory settings README's "Running the agent" gives (issue 16): V8's
 * young generation capped (`--max-semi-space-size`) and glibc's malloc held to two arenas (`MALLOC_ARENA_MAX`).
 * Both are read at process start, so the agent cannot set them itself: it says at start what it got, and warns when
 * either is missing (more RSS per remote endpoint, nothing else: docs/benchmarks.md, s32 and s33).
 */

/** What the agent was started with: each setting's value as given, or undefined when it is not set. */
export interface MemorySettings {
  /** `--max-semi-space-size` from the command line or NODE_OPTIONS (MiB, as written). */
  maxSemiSpaceMiB: string | undefined;
  /** MALLOC_ARENA_MAX, else glibc.malloc.arena_max from GLIBC_TUNABLES (its other way to set the same). */
  mallocArenaMax: string | undefined;
}

/** Reads them from a process's V8 flags and environment (the agent passes its own). */
export function memorySettings(execArgv: readonly string[], env: NodeJS.ProcessEnv): MemorySettings {
  const flags = [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)];
  let maxSemiSpaceMiB: string | undefined;
  flags.forEach((f, i) => {
    // --max-semi-space-size=N, --max_semi_space_size=N, or the value as the next word
    const name = f.split('=')[0]!.replace(/_/g, '-');
    if (name !== '--max-semi-space-size') return;
    maxSemiSpaceMiB = f.includes('=') ? f.slice(f.indexOf('=') + 1) : flags[i + 1];
  });
  const tunable = /(?:^|:)glibc\.malloc\.arena_max=([^:]*)/.exec(env.GLIBC_TUNABLES ?? '')?.[1];
  return { maxSemiSpaceMiB, mallocArenaMax: env.MALLOC_ARENA_MAX ?? tunable };
}
