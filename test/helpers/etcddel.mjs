// Run inside a testbed namespace: deletes KEY (e.g. a stored policy) with the given credentials.
import { connectEtcd } from '../../dist/src/controlplane/kvstore.js';

const [url, ca, cert, key, k] = process.argv.slice(2);
const c = connectEtcd({ endpoints: [url], caFile: ca, certFile: cert, keyFile: key });
const r = await c.delete().key(k).exec();
console.log(JSON.stringify({ deleted: Number(r.deleted) }));
c.close();
