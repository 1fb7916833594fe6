// Run inside a testbed namespace: with one set of etcd credentials, try each
// operation and print {name: "allowed" | "denied" | "error: ..."} as JSON.
//   node rbacprobe.mjs URL CA CERT KEY OPS_JSON
// OPS_JSON: [{ name, op: put|get|list|delete|deletePrefix|samePut|revokeLeaseOf, key }]
//   samePut: writes the key's current value back under its current lease (harmless)
//   revokeLeaseOf: revokes the lease that holds the key
import { connectEtcd } from '../../dist/src/controlplane/kvstore.js';

const [url, ca, cert, key, opsJson] = process.argv.slice(2);
const c = connectEtcd({ endpoints: [url], caFile: ca, certFile: cert, keyFile: key });
const verdict = (p) => p.then(() => 'allowed', (e) => (/permission denied/i.test(e.message) ? 'denied' : `error: ${e.message}`));
const out = {};
for (const o of JSON.parse(opsJson)) {
  let p;
  switch (o.op) {
    case 'put': p = c.put(o.key).value('{"evil":true}').exec(); break;
    case 'get': p = c.get(o.key).exec(); break;
    case 'list': p = c.getAll().prefix(o.key).keys(); break;
    case 'delete': p = c.delete().key(o.key).exec(); break;
    case 'deletePrefix': p = c.delete().prefix(o.key).exec(); break;
    case 'samePut': p = c.get(o.key).exec().then((r) => {
      const kv = r.kvs[0];
      if (!kv) throw new Error(`no ${o.key}`);
      const put = c.put(o.key).value(kv.value);
      return (kv.lease !== '0' ? put.lease(kv.lease) : put).exec();
    }); break;
    case 'revokeLeaseOf': {
      // the lease id comes from a key the caller may read; revoking it is a separate right
      const r = await c.get(o.key).exec();
      const lease = r.kvs[0]?.lease;
      p = !lease || lease === '0' ? Promise.reject(new Error(`no lease on ${o.key}`)) : c.leaseClient.leaseRevoke({ ID: lease });
      break;
    }
    default: p = Promise.reject(new Error(`unknown op ${o.op}`));
  }
  out[o.name] = await verdict(p);
}
c.close();
console.log(JSON.stringify(out));
