// Run inside a testbed namespace: deletes each KEY (e.g. stored policies) with the given credentials.
import { connectEtcd } from '../../dist/src/controlplane/kvstore.js';

const [url, ca, cert, key, ...keys] = process.argv.slice(2);
const c = connectEtcd({ endpoints: [url], caFile: ca, certFile: cert, keyFile: key });
let deleted = 0;
for (const k of keys) deleted += Number((await c.delete().key(k).exec()).deleted);
console.log(JSON.stringify({ deleted }));
c.close();
