// Run inside a testbed namespace: prints the keys under PREFIX as a JSON list.
import { connectEtcd } from '../../dist/src/controlplane/kvstore.js';

const [url, ca, cert, key, prefix] = process.argv.slice(2);
const c = connectEtcd({ endpoints: [url], caFile: ca, certFile: cert, keyFile: key });
console.log(JSON.stringify((await c.getAll().prefix(prefix).keys()).map(String).sort()));
c.close();
