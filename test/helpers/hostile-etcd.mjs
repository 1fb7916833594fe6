// Run inside a testbed namespace: raw etcd operations with one set of
// credentials (a compromised cluster's root certificate, or a reader's).
//   node hostile-etcd.mjs URL CA CERT KEY OPS_FILE
// OPS_FILE: JSON list of
//   { op: "put", key, value }                 value written as is (any text)
//   { op: "get", key }                        -> value or null
//   { op: "list", prefix }                    -> [{ key, value }]
//   { op: "count", prefix }                   -> number of keys
//   { op: "bulk", prefix, count, template }   count puts of template with %I% replaced by the index,
//                                              under prefix + "bulk-" + index, 128 ops per transaction
// Prints the results as one JSON list.
import { readFileSync } from 'node:fs';
import { connectEtcd } from '../../dist/src/controlplane/kvstore.js';

const [url, ca, cert, key, opsFile] = process.argv.slice(2);
const c = connectEtcd({ endpoints: [url], caFile: ca, certFile: cert, keyFile: key });
const out = [];
for (const o of JSON.parse(readFileSync(opsFile, 'utf8'))) {
  switch (o.op) {
    case 'put':
      await c.put(o.key).value(o.value).exec();
      out.push(true);
      break;
    case 'get':
      out.push(await c.get(o.key).string());
      break;
    case 'delete':
      await c.delete().key(o.key).exec();
      out.push(true);
      break;
    case 'list': {
      const all = await c.getAll().prefix(o.prefix).strings();
      out.push(Object.entries(all).map(([k, v]) => ({ key: k, value: v })));
      break;
    }
    case 'count':
      out.push(Number((await c.getAll().prefix(o.prefix).count())));
      break;
    case 'bulk': {
      const t = Date.now();
      for (let i = 0; i < o.count; i += 128) {
        const ops = [];
        for (let j = i; j < Math.min(o.count, i + 128); j++) {
          const n = String(j).padStart(6, '0');
          ops.push(c.put(`${o.prefix}bulk-${n}`).value(o.template.replaceAll('%I%', n)));
        }
        await c.if(`${o.prefix}bulk-000000`, 'Version', '>', -1).then(...ops).commit();
      }
      out.push({ written: o.count, ms: Date.now() - t });
      break;
    }
    default:
      throw new Error(`unknown op ${o.op}`);
  }
}
c.close();
console.log(JSON.stringify(out));
