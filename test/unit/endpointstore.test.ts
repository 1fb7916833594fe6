// Admission's endpoint table (src/agent/endpointstore.ts) against the three maps it replaced (candidates,
// admitted values, keys by node) on seeded random sequences: a failure reproduces from its seed.
import { describe, expect, it } from 'vitest';
import { EndpointStore, nodeIdOf } from '../../src/agent/endpointstore.js';
import { prng } from '../helpers/prng.js';
import { EndpointRecordsMap, type EndpointRecord, type EndpointRecords } from '../../src/controlplane/endpointrecords.js';

const key = (c: string, n: string, ip: string) => `wiremesh/cache/ip/v2/${c}/${n}/${ip}`;

describe('EndpointStore', () => {
  it('names the node of an endpoint key, "" for other keys', () => {
    expect(nodeIdOf(key('c2', 'n1', '100.66.1.10'))).toBe('c2/n1');
    expect(nodeIdOf('wiremesh/state/ip/v2/c1/n-a/fd00::1')).toBe('c1/n-a');
    expect(nodeIdOf('wiremesh/cache/ip/v2/c2/100.66.1.10')).toBe('');
    expect(nodeIdOf('other')).toBe('');
    expect(nodeIdOf('wiremesh/cache/ip/v2/c2/n1/')).toBe('c2/n1');
    for (const k of ['wiremesh/cache/ip/v2//n1/1.2.3.4', 'wiremesh/cache/ip/v2/c2//1.2.3.4', 'wiremesh/cache/ip/v2/c2/', 'wiremesh/cache/ip/v2/c2', 'wiremesh/cache/nodes/v1/c2/n1/x']) expect(nodeIdOf(k)).toBe('');
  });

  it('reads a node from a key form only through nodeOf: nodeIdOf refuses a form loudly (review of s13mem #1)', () => {
    const s = new EndpointStore();
    const k = key('c2', 'n1', '100.66.1.10');
    const form = s.forms.acquire(k);
    expect(form.charCodeAt(0)).toBe(0); // compact (short: \x00 and a 3-character index)
    expect(() => nodeIdOf(form)).toThrow(/key form/); // was '': a quota released against no node
    expect(s.nodeOf(form)).toBe('c2/n1');
    expect(s.nodeOf(k)).toBe('c2/n1');
    const escaped = s.forms.acquire('\u0001x'); // a key that is no endpoint key, starting with a control character
    expect(() => nodeIdOf(s.forms.full(escaped))).toThrow(/key form/);
    expect(s.nodeOf(escaped)).toBe('');
    s.forms.release(form);
  });

  for (const seed of [1, 2, 3, 42, 9001]) {
    it(`agrees with the reference maps on random changes (seed ${seed})`, () => {
      const rand = prng(seed);
      const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const s = new EndpointStore();
      const cand = new Map<string, { cluster: string; rec: unknown }>();
      const adm = new Map<string, unknown>();
      const keys = ['c1', 'c2'].flatMap((c) => ['n1', 'n2', 'n3'].flatMap((n) => ['100.64.0.1', '100.64.0.2'].map((ip) => key(c, n, ip)))).concat(['bogus/key']);
      const recs = keys.map((k, i) => ({ cluster: nodeIdOf(k).split('/')[0] || 'c1', v: k, namespace: i % 3 ? 'a' : 'b' }));
      for (let step = 0; step < 400; step++) {
        const k = pick(keys);
        const r = rand();
        if (r < 0.35) {
          const rec = rand() < 0.5 ? pick(recs) : { ...pick(recs) };
          const cluster = rand() < 0.9 ? rec.cluster : 'cx';
          s.candidates.set(k, cluster, rec);
          cand.set(k, { cluster, rec });
        } else if (r < 0.5) {
          s.candidates.delete(k);
          cand.delete(k);
        } else if (r < 0.8) {
          const v = rand() < 0.7 ? cand.get(k)?.rec ?? pick(recs) : pick(recs);
          s.admitted.set(k, v);
          adm.set(k, v);
        } else {
          s.admitted.delete(k);
          adm.delete(k);
        }
        for (const x of keys) {
          expect(s.candidates.get(x)).toEqual(cand.get(x));
          if (cand.has(x)) expect(s.candidates.get(x)!.rec).toStrictEqual(cand.get(x)!.rec);
          expect(s.admitted.get(x)).toStrictEqual(adm.get(x));
        }
        expect(new Map([...s.candidates])).toEqual(cand);
        expect(new Set(s.admitted.keys())).toEqual(new Set(adm.keys()));
        for (const id of ['c1/n1', 'c1/n2', 'c2/n3', '']) {
          const want = keys.filter((x) => nodeIdOf(x) === id && (cand.has(x) || adm.has(x)));
          expect(new Set(s.keysOfNode(id))).toEqual(new Set(want));
          expect(s.admittedOfNodeCount(id)).toBe(keys.filter((x) => nodeIdOf(x) === id && adm.has(x)).length);
          // the records' view node by node (the services' index reads it): the admitted values of that node's keys
          for (const ns of ['a', 'b']) {
            const admittedHere = [...adm].filter(([x, v]) => nodeIdOf(x) === id && (v as { namespace: string }).namespace === ns);
            expect(new Map([...(s.records as EndpointRecords).entriesOfNode(id, ns)])).toEqual(new Map(admittedHere));
          }
        }
      }
    });
  }
});

describe('EndpointStore.admittedOfNodeCount (EndpointQuota reads it)', () => {
  for (const seed of [5, 6, 7]) {
    it(`counts a node's admitted keys through its table's changes of form: cells, past 32 keys, a key of another shape (seed ${seed})`, () => {
      const rand = prng(seed);
      const s = new EndpointStore();
      // one node's keys as the watch hands them: compact forms (cells while ≤ 32 of one base), and one plain key
      // under the same node (a form kept plain: the table turns into a KeyTable while it is held)
      const texts = Array.from({ length: 40 }, (_, i) => key('c2', 'n1', `100.66.0.${i + 1}`));
      const forms = texts.map((t) => s.forms.acquire(t));
      const plain = '\u0002' + key('c2', 'n1', '100.66.1.1');
      const all = [...forms, plain];
      const adm = new Set<string>();
      const rec = (k: string) => ({ cluster: 'c2', node: 'n1', ip: s.forms.full(k).slice(s.forms.full(k).lastIndexOf('/') + 1) });
      for (let step = 0; step < 3000; step++) {
        const k = all[Math.floor(rand() * (rand() < 0.9 ? 20 : all.length))]!;
        const r = rand();
        if (r < 0.4) {
          const v = rec(k);
          s.candidates.set(k, 'c2', v);
          s.admitted.set(k, v);
          adm.add(k);
        } else if (r < 0.6) {
          s.admitted.delete(k);
          adm.delete(k);
        } else if (r < 0.8) {
          s.candidates.set(k, 'c2', rec(k)); // a candidate only (or a new one beside the admitted value)
        } else {
          s.candidates.delete(k);
          s.admitted.delete(k);
          adm.delete(k);
        }
        expect(s.admittedOfNodeCount('c2/n1')).toBe(adm.size);
        expect(s.admittedSize).toBe(adm.size);
      }
    });
  }
});

describe('EndpointRecordsMap', () => {
  it('files each key under its record\'s node as records come, change node and go', () => {
    const m = new EndpointRecordsMap();
    const rec = (node: string, ip: string, namespace = 'ns'): EndpointRecord => ({ ip, cluster: 'c1', node, namespace, name: 'p', labels: {} });
    const byNode = (id: string) => new Map(m.entriesOfNode(id, 'ns'));
    m.set('a', rec('n1', '100.64.0.1')).set('b', rec('n1', '100.64.0.2')).set('c', rec('n2', '100.64.0.3'));
    expect(byNode('c1/n1')).toEqual(new Map([['a', m.get('a')], ['b', m.get('b')]]));
    m.set('a', rec('n2', '100.64.0.1')); // moved: filed under its new node only
    expect([...byNode('c1/n1').keys()]).toEqual(['b']);
    expect(new Set(byNode('c1/n2').keys())).toEqual(new Set(['a', 'c']));
    m.delete('b');
    expect(byNode('c1/n1')).toEqual(new Map());
    expect(m.delete('b')).toBe(false);
    m.clear();
    expect(byNode('c1/n2')).toEqual(new Map());
    expect(m.size).toBe(0);
    expect(byNode('c9/none')).toEqual(new Map());
    m.set('d', rec('n1', '100.64.0.4', 'other')); // another namespace: on its node, not in ns
    expect(byNode('c1/n1')).toEqual(new Map());
    expect([...m.entriesOfNode('c1/n1', 'other')]).toEqual([['d', m.get('d')]]);
  });
});
