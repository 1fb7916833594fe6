/**
 * Where the agent's (this process's) memory sits, for bench:controlplane's growth per remote endpoint:
 * V8's heap (used, and committed pages), external and ArrayBuffer bytes V8 knows about, and the process's
 * resident anonymous memory split by mapping from /proc/self/smaps:
 *   mainArena    glibc's main malloc arena ([heap], brk)
 *   threadArenas glibc's per-thread arenas: anonymous rw mappings that start on a 64 MiB boundary and are
 *                followed by their reservation's PROT_NONE rest up to the next 64 MiB (HEAP_MAX_SIZE on 64-bit)
 *   otherAnon    every other mapping without an inode: V8's heap pages, large mallocs (≥ 128 KiB: mmap), thread
 *                stacks, [stack], [vdso]/[vvar] and named anonymous mappings ([anon:…])
 *   file         mappings with an inode (≠ 0): code, the addon, shared memory; classified by inode, not by name,
 *                since the kernel names some anonymous mappings too
 * and, from glibc itself (the addon's mallocInfo: mallinfo2 over every arena), the bytes its arenas hold in use
 * and free (mallocInUse, mallocFree): free bytes are resident until reused or trimmed (src/agent/malloctrim.ts).
 * The mappings are an approximation of glibc's layout read from outside, so the parts are compared between two
 * readings of one process, never across builds alone.
 */
import { readFileSync } from 'node:fs';
import { native } from '../src/native/binding.js';

export interface MemParts {
  rss: number;
  heapUsed: number;
  heapCommitted: number;
  external: number;
  arrayBuffers: number;
  mainArena: number;
  threadArenas: number;
  otherAnon: number;
  file: number;
  mallocInUse: number;
  mallocFree: number;
}

const ARENA = 64 * 2 ** 20;

/** One reading of this process's memory, in bytes. */
export function memParts(): MemParts {
  const mu = process.memoryUsage();
  const m = native.mallocInfo();
  return { rss: mu.rss, heapUsed: mu.heapUsed, heapCommitted: mu.heapTotal, external: mu.external, arrayBuffers: mu.arrayBuffers, ...smapsParts(readFileSync('/proc/self/smaps', 'utf8')), mallocInUse: m?.inUseBytes ?? 0, mallocFree: m?.freeBytes ?? 0 };
}

/** The resident bytes of an smaps text (/proc/<pid>/smaps) by part, as in the header. */
export function smapsParts(smaps: string): Pick<MemParts, 'mainArena' | 'threadArenas' | 'otherAnon' | 'file'> {
  const parts = { mainArena: 0, threadArenas: 0, otherAnon: 0, file: 0 };
  const maps: Array<{ start: number; end: number; perms: string; inode: string; name: string; rss: number }> = [];
  for (const line of smaps.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (head) maps.push({ start: parseInt(head[1]!, 16), end: parseInt(head[2]!, 16), perms: head[3]!, inode: head[4]!, name: head[5]!, rss: 0 });
    else if (line.startsWith('Rss:') && maps.length) maps[maps.length - 1]!.rss = Number(line.split(/\s+/)[1]) * 1024;
  }
  maps.forEach((m, i) => {
    if (m.name === '[heap]') parts.mainArena += m.rss;
    else if (m.inode !== '0') parts.file += m.rss;
    else if (m.start % ARENA === 0 && m.perms.startsWith('rw') && (m.end - m.start === ARENA || (maps[i + 1]?.start === m.end && maps[i + 1]!.perms.startsWith('---') && maps[i + 1]!.end === m.start + ARENA))) parts.threadArenas += m.rss;
    else parts.otherAnon += m.rss;
  });
  return parts;
}

/** (b - a) per unit, each part, rounded to bytes. */
export function partsPer(a: MemParts, b: MemParts, units: number): Record<keyof MemParts, number> {
  const out = {} as Record<keyof MemParts, number>;
  for (const k of Object.keys(a) as Array<keyof MemParts>) out[k] = Math.round((b[k] - a[k]) / units);
  return out;
}
