// The addon's allowed-IPs calls given arguments of the wrong shape (regression, s35 review): the addon runs without
// C++ exceptions, so an unchecked cast left an exception pending and went on, inserting a prefix of length 0 for
// the peer before JS saw the error, or aborted the process when the next error was thrown over the pending one.
// Each bad call must throw a TypeError, apply nothing, and leave the process and the device working.
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../src/native/binding.js';
import { readAllowedIPRows } from '../../src/native/rows.js';
import { formatPrefix } from '../../src/net/ip.js';

const open: Array<{ close(): void }> = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
});

const ok: Array<[Buffer, number]> = [[Buffer.from([100, 64, 1, 0]), 24]];
const BAD: unknown[] = [
  [5],
  [null],
  [[]],
  ['100.64.1.0/24'],
  [[Buffer.from([100, 64, 1, 0])]],
  [[Buffer.from([100, 64, 1, 0]), '24']],
  [[Buffer.from([100, 64, 1, 0]), 24, 1]],
  [[Buffer.from([100, 64, 1, 0]), NaN]],
  [[Buffer.from([100, 64, 1, 0]), -1]],
  [[Buffer.from([100, 64, 1, 0]), 33]],
  [[Buffer.from([100, 64, 1, 0]), 24.5]],
  [[Buffer.from([100, 64, 1, 0]), 2 ** 32 + 24]],
  [[Buffer.from([100, 64, 1]), 24]],
  [[Buffer.alloc(16), 129]],
  [...ok, [5, 5]], // a good prefix before a bad one: nothing applied
];

describe('addon allowed-IPs calls refuse malformed arguments whole', () => {
  for (const method of ['setAllowedIPs', 'addAllowedIPs'] as const) {
    it(`${method}: every malformed shape throws a TypeError and changes nothing`, () => {
      const dev = new native.Device({ createTun: false });
      open.push(dev);
      dev.upsertPeer(1);
      dev.setAllowedIPs(1, [[Buffer.from([198, 18, 0, 1]), 32]]);
      const held = () => readAllowedIPRows(dev.allowedIPs(1)).map(formatPrefix);
      for (const bad of BAD) {
        expect(() => (dev[method] as (id: unknown, p: unknown) => void)(1, bad), JSON.stringify(bad)).toThrow(TypeError);
        expect(held(), JSON.stringify(bad)).toEqual(['198.18.0.1/32']);
      }
      expect(() => (dev[method] as (id: unknown, p: unknown) => void)('1', ok)).toThrow(TypeError);
      dev[method](1, ok);
      expect(held()).toEqual(method === 'setAllowedIPs' ? ['100.64.1.0/24'] : ['198.18.0.1/32', '100.64.1.0/24']);
    });
  }
});
