import { describe, expect, it } from 'vitest';
import { smapsParts } from '../../bench/cp-memparts.js';

// One smaps entry: the header line as proc(5) gives it (address perms offset dev inode pathname), then its Rss.
const entry = (range: string, perms: string, dev: string, inode: number, name: string, rssKb: number) =>
  `${range} ${perms} 00000000 ${dev} ${inode}                          ${name}\nSize: 4 kB\nRss:  ${rssKb} kB\nPss: ${rssKb} kB\n`;

describe('bench cp-memparts', () => {
  // Oracle (proc(5)): a mapping is file-backed when its inode is not 0; the kernel names some anonymous ones
  // ([stack], [vdso], [vvar], [anon:…] set by prctl(PR_SET_VMA_ANON_NAME)), and those are not files.
  it('classifies by inode: named anonymous mappings are anonymous, every mapping with an inode is a file', () => {
    const smaps = [
      entry('55cab1e02000-55cab1e06000', 'r-xp', '08:01', 1234, '/usr/bin/node', 1),
      entry('55cab1e06000-55cab1e1c000', 'rw-p', '00:00', 0, '[heap]', 2),
      entry('7f0000000000-7f0000021000', 'rw-p', '00:00', 0, '', 4),
      entry('7f0000021000-7f0004000000', '---p', '00:00', 0, '', 0),
      entry('7fbd57000000-7fbd57100000', 'rw-p', '00:00', 0, '[anon:v8]', 8),
      entry('7fbd57405000-7fbd57409000', 'r--p', '00:00', 0, '[vvar]', 16),
      entry('7fbd5740b000-7fbd5740d000', 'r-xp', '00:00', 0, '[vdso]', 32),
      entry('7fbd5740e000-7fbd5740f000', 'rw-s', '00:05', 77, '/dev/shm/x (deleted)', 64),
      entry('7ffdf65e7000-7ffdf6608000', 'rw-p', '00:00', 0, '[stack]', 128),
      entry('7ffdf6700000-7ffdf6701000', 'rw-p', '00:00', 0, '', 256),
    ].join('');
    expect(smapsParts(smaps)).toEqual({ file: (1 + 64) * 1024, mainArena: 2 * 1024, threadArenas: 4 * 1024, otherAnon: (8 + 16 + 32 + 128 + 256) * 1024 });
  });
});
