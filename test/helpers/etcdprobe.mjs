// Run inside a testbed namespace: with the credentials cluster A holds for
// remote B (read from A's etcd with A's root certificate), try what a remote
// reader may and may not do in B's etcd. Prints one JSON line.
import { connectEtcd } from '../../dist/src/controlplane/kvstore.js';

const [aUrl, ca, cert, key, remote] = process.argv.slice(2);
const a = connectEtcd({ endpoints: [aUrl], caFile: ca, certFile: cert, keyFile: key });
const spec = JSON.parse(await a.get(`wiremesh/mesh/v1/remotes/${remote}`).string());
a.close();
const b = connectEtcd(spec);
const attempt = (p) => p.then(() => 'allowed', (e) => (/permission denied/i.test(e.message) ? 'denied' : `error: ${e.message}`));
const out = {
  readState: await attempt(b.getAll().prefix(`wiremesh/state/nodes/v1/${remote}/`).keys()),
  readMeshSecrets: await attempt(b.getAll().prefix('wiremesh/mesh/').keys()),
  readClusterConfig: await attempt(b.getAll().prefix('wiremesh/cluster-config/').keys()),
  writeState: await attempt(b.put(`wiremesh/state/nodes/v1/${remote}/evil`).value('{}').exec()),
};
b.close();
console.log(JSON.stringify(out));
