// Run inside a testbed namespace: `wiremesh policy trace` kept running for the
// conformance suite. The same functions as the CLI (loadMeshState,
// resolveEndpoint, trace from dist/src/policy/trace.js), one process instead of
// one per question. argv[2]: JSON [{ cluster, etcd, ca, cert, key }]. Each stdin
// line { id, pods: ["c1/x/xa", ...], ports: [80, 81], protos: ["TCP", "UDP"] }
// is answered with one line { id, cells: { "SRC>DST/PROTO/PORT": { egress, ingress } } }:
// the egress step as the source's cluster traces it and the ingress step as the
// destination's cluster does (each cluster enforces its own policies; no etcd
// holds both sides of a cross-cluster flow). A line { id, delete: { CLUSTER: [KEY...] } }
// deletes those keys (the suite's policy deletions, until `wiremesh delete`
// exists: one process instead of one etcd client start per deletion) and is
// answered with { id, deleted }.
import { createInterface } from 'node:readline';
import { connectEtcd } from '../../dist/src/controlplane/kvstore.js';
import { loadMeshState, resolveEndpoint, trace } from '../../dist/src/policy/trace.js';

const clusters = JSON.parse(process.argv[2]).map((c) => ({ ...c, etcd: connectEtcd({ endpoints: [c.etcd], caFile: c.ca, certFile: c.cert, keyFile: c.key }) }));

async function answer(req) {
  const cells = {};
  for (const c of clusters) {
    const st = await loadMeshState(c.etcd);
    for (const src of req.pods)
      for (const dst of req.pods) {
        if (src === dst) continue;
        const [sc, dc] = [src.split('/')[0], dst.split('/')[0]];
        if (sc !== c.cluster && dc !== c.cluster) continue;
        const s = resolveEndpoint(st, src, c.cluster);
        const d = resolveEndpoint(st, dst, c.cluster);
        for (const proto of req.protos)
          for (const port of req.ports) {
            const t = trace(st, s, d, proto, port);
            const cell = (cells[`${src}>${dst}/${proto}/${port}`] ??= {});
            for (const step of t.steps) {
              const mine = step.direction === 'egress' ? sc === c.cluster : dc === c.cluster;
              if (mine) cell[step.direction] = step.verdict;
            }
          }
      }
  }
  return cells;
}

async function remove(req) {
  let deleted = 0;
  for (const c of clusters) for (const k of req.delete[c.cluster] ?? []) deleted += Number((await c.etcd.delete().key(k).exec()).deleted);
  return { deleted };
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const req = JSON.parse(line);
  (req.delete ? remove(req) : answer(req).then((cells) => ({ cells }))).then(
    (res) => process.stdout.write(JSON.stringify({ id: req.id, ...res }) + '\n'),
    (err) => process.stdout.write(JSON.stringify({ id: req.id, error: String(err?.message ?? err) }) + '\n'),
  );
});
process.stderr.write('ready\n');
