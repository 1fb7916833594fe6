/**
 * `wiremesh`: the agent, the kvstoremesh replicator, cluster-mesh management and
 * the network-namespace testbed, as subcommands.
 */
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, WiremeshError } from '../errors.js';
import { createLogger } from '../log.js';
import { etcdOptions, withOptionalEtcdFlags } from './etcdflags.js';
import { exitCodeFor } from './exitcodes.js';
import { inTestbed, registerObjectCommands } from './objects.js';
import { registerPodLabel } from './podlabel.js';
import { registerTestbed } from './testbedcmd.js';

/** One side (a or b) of connect/disconnect: its --X-etcd* flags and --X-pki folder. */
function side(o: Record<string, string>, p: 'a' | 'b') {
  return { ...etcdOptions({ etcd: o[`${p}Etcd`]!, etcdCa: o[`${p}EtcdCa`], etcdCert: o[`${p}EtcdCert`], etcdKey: o[`${p}EtcdKey`] }), pkiDir: o[`${p}Pki`] };
}

function withEtcdFlags(cmd: Command, prefix = ''): Command {
  const p = prefix ? `${prefix}-` : '';
  return cmd
    .requiredOption(`--${p}etcd <urls>`, 'etcd endpoints, comma separated')
    .option(`--${p}etcd-ca <file>`, 'CA certificate (PEM) to verify etcd')
    .option(`--${p}etcd-cert <file>`, 'client certificate (PEM)')
    .option(`--${p}etcd-key <file>`, 'client key (PEM)');
}

function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
}

/** Progress lines on stderr with the time since the command started. */
function progress(): (msg: string) => void {
  const t0 = Date.now();
  return (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}\n`);
}

/** The agents to read: --socket, or every node of the testbed (one node with cluster/node). */
async function agentSockets(sockets: string[] | undefined, testbed: string | undefined, node?: string): Promise<string[]> {
  if (sockets && sockets.length > 0) return sockets;
  const { loadState } = await import('../testbed/testbed.js');
  const nodes = loadState(testbed).clusters.flatMap((c) => c.nodes.map((n) => ({ id: `${c.name}/${n.name}`, socket: n.socket })));
  const chosen = node ? nodes.filter((n) => n.id === node) : nodes;
  if (chosen.length === 0) throw new ConfigError('--node', `no testbed node ${node} (have ${nodes.map((n) => n.id).join(', ')})`);
  return chosen.map((n) => n.socket);
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command('wiremesh').description('wiremesh: a WireGuard cluster mesh').showHelpAfterError();
  program.exitOverride();

  program
    .command('agent')
    .description('run the node agent')
    .requiredOption('--config <file>', 'node.yaml')
    .action(async (o: { config: string }) => {
      const { loadAgentConfig } = await import('../agent/config.js');
      const { Agent } = await import('../agent/agent.js');
      const { serveApi } = await import('../agent/api.js');
      const cfg = loadAgentConfig(o.config);
      const log = createLogger(`agent(${cfg.cluster.name}/${cfg.node.name})`);
      const agent = new Agent(cfg, log);
      await agent.start();
      const api = await serveApi(agent, cfg.api.socket);
      const why = await waitForSignal();
      log.info({ why }, 'stopping');
      // records stay to expire with the lease; do not let a slow etcd hold the TUN and port
      setTimeout(() => {
        log.warn('stop took over 3 s, exiting');
        process.exit(0);
      }, 3000).unref();
      api.close();
      await agent.stop();
    });

  withEtcdFlags(program.command('kvstoremesh').description("replicate connected clusters' state into this cluster's etcd"))
    .requiredOption('--cluster <name>', 'this cluster')
    .option('--identity-gc-interval <seconds>', 'sweep for identities no node uses (deleted on the second sweep that finds them unused)', '60')
    .option('--max-records-per-remote <n>', "a remote's record budget: past it, its new records are refused and reported", '250000')
    .option('--max-bytes-per-remote <n>', "a remote's byte budget (keys + values)", String(256 << 20))
    .option('--max-nodes-per-remote <n>', "a remote's node budget (each node is a tunnel in every agent)", '5000')
    .option('--max-identity-refs-per-node <n>', "identity references a node of this cluster counts for (2 x the agents' admission.maxEndpointsPerNode); the rest are refused", '2048')
    .option('--metrics <address:port>', 'serve Prometheus metrics (GET /metrics) on this TCP address (docs/metrics.md)')
    .option('--txn-interval-ms <ms>', 'least time between two local mirror transactions (0-1000): a copy waits at most this long to share one', '100')
    .action(async (o: { cluster: string; etcd: string; etcdCa?: string; etcdCert?: string; etcdKey?: string; identityGcInterval: string; maxRecordsPerRemote: string; maxBytesPerRemote: string; maxNodesPerRemote: string; maxIdentityRefsPerNode: string; metrics?: string; txnIntervalMs: string }) => {
      const { connectEtcd } = await import('../controlplane/kvstore.js');
      const { KVStoreMesh } = await import('../controlplane/kvstoremesh.js');
      const { etcdMeshLocal } = await import('../controlplane/mirrorwriter.js');
      // idle most of its life: one memory-reducer collection after a burst of work, not three (idleheap.ts)
      (await import('./idleheap.js')).quietIdleHeap();
      const log = createLogger(`kvstoremesh(${o.cluster})`);
      const gcS = Number(o.identityGcInterval);
      if (!Number.isFinite(gcS) || gcS < 1) throw new ConfigError('--identity-gc-interval', 'must be a number of seconds >= 1');
      const etcd = connectEtcd(etcdOptions(o));
      const budget = { maxRecords: Number(o.maxRecordsPerRemote), maxBytes: Number(o.maxBytesPerRemote), maxNodes: Number(o.maxNodesPerRemote) };
      for (const [flag, n] of [['--max-records-per-remote', budget.maxRecords], ['--max-nodes-per-remote', budget.maxNodes], ['--max-identity-refs-per-node', Number(o.maxIdentityRefsPerNode)]] as const) if (!Number.isInteger(n) || n < 1) throw new ConfigError(flag, 'must be a whole number >= 1');
      if (!Number.isInteger(budget.maxBytes) || budget.maxBytes < 1024) throw new ConfigError('--max-bytes-per-remote', 'must be a whole number >= 1024');
      const at = o.metrics === undefined ? undefined : /^(.+):(\d{1,5})$/.exec(o.metrics);
      if (at === null || (at && Number(at[2]) > 65535)) throw new ConfigError('--metrics', 'must be <address>:<port>');
      const intervalMs = Number(o.txnIntervalMs);
      if (!Number.isInteger(intervalMs) || intervalMs < 0 || intervalMs > 1000) throw new ConfigError('--txn-interval-ms', 'must be a whole number of ms from 0 to 1000');
      const mesh = new KVStoreMesh(o.cluster, etcdMeshLocal(etcd), log, gcS * 1000, budget, { txn: { intervalMs }, maxIdentityRefsPerNode: Number(o.maxIdentityRefsPerNode) });
      const { KVStoreMeshMetrics } = await import('../controlplane/meshmetrics.js');
      const { serveMetrics } = await import('../net/metricsserver.js');
      // the listener first: when it cannot listen, nothing was started, and the process exits with the error
      // (started first, a mesh without the metrics asked for would run on, headless)
      const server = at
        ? await serveMetrics(new KVStoreMeshMetrics(o.cluster, mesh), at[1]!.replace(/^\[(.*)\]$/, '$1'), Number(at[2])).catch((err: Error) => {
            etcd.close();
            throw new ConfigError('--metrics', `cannot listen on ${o.metrics}: ${err.message}`);
          })
        : undefined;
      await mesh.start();
      log.info('kvstoremesh started');
      await waitForSignal();
      server?.close();
      await mesh.stop();
      etcd.close();
    });

  program
    .command('gateway-dns')
    .description("health-aware DNS entry point: a service's public name -> the healthy ingress gateways, the client's region first")
    .requiredOption('--config <file>', 'YAML: etcd, listen, ttl, names, regions, metrics (src/gateway/gslb.ts)')
    .action(async (o: { config: string }) => {
      const { GatewayDns, loadGatewayDnsConfig } = await import('../gateway/gslb.js');
      const log = createLogger('gateway-dns');
      const cfg = loadGatewayDnsConfig(o.config);
      const g = new GatewayDns(cfg, log);
      // the metrics listener first (as kvstoremesh's): an address it cannot listen on fails before anything starts
      const server = cfg.metrics && (await (await import('../gateway/gslbmetrics.js')).serveGatewayDnsMetrics(g, cfg.metrics));
      await g.start().catch((err: unknown) => (server?.close(), Promise.reject(err))); // no /metrics for a DNS that is not up
      await waitForSignal();
      server?.close();
      await g.stop();
    });

  const cm = program.command('clustermesh').description('connect clusters into a mesh');
  cm.command('pki')
    .description("create a cluster's CA, etcd server certificate and the root (operator), kvstoremesh and observer client certificates")
    .requiredOption('--cluster <name>', 'cluster name')
    .requiredOption('--dir <dir>', 'where to write ca.crt/key, etcd.crt/key, root.crt/key, kvstoremesh.crt/key, observer.crt/key')
    .requiredOption('--ip <ips>', "etcd's IP addresses (certificate SANs), comma separated")
    .action(async (o: { cluster: string; dir: string; ip: string }) => {
      const { createClusterPKI } = await import('../controlplane/pki.js');
      createClusterPKI(o.dir, o.cluster, o.ip.split(','));
      console.log(`PKI for ${o.cluster} in ${o.dir}`);
    });
  withEtcdFlags(cm.command('node-credentials').description("issue a node's own etcd certificate (CN=node-NODE) and create its etcd user and role: it may write only its own records (--etcd-* flags: root)"))
    .requiredOption('--cluster <name>', 'cluster name')
    .requiredOption('--node <name>', 'node name (as in its node.yaml)')
    .requiredOption('--dir <dir>', "the cluster's PKI folder (clustermesh pki)")
    .requiredOption('--out <dir>', 'where to write node.crt, node.key and ca.crt for the node')
    .action(async (o: { cluster: string; node: string; dir: string; out: string; etcd: string; etcdCa?: string; etcdCert?: string; etcdKey?: string }) => {
      const { issueNodeCredentials } = await import('../controlplane/rbac.js');
      const cred = await issueNodeCredentials({ cluster: o.cluster, node: o.node, pkiDir: o.dir, outDir: o.out, root: etcdOptions(o) });
      console.log(`etcd user ${cred.user} for ${o.cluster}/${o.node}: ${cred.certFile}, ${cred.keyFile}, ${cred.caFile}`);
    });
  withEtcdFlags(cm.command('enable').description("record this cluster's name, id, pod and underlay CIDRs in its etcd"))
    .requiredOption('--cluster <name>', 'cluster name')
    .requiredOption('--id <n>', 'cluster id (1-255; 1-511 with --max-connected-clusters 511)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n)) throw new InvalidArgumentError('not an integer');
      return n;
    })
    .requiredOption('--pod-cidr <cidrs>', 'pod CIDRs, comma separated')
    .requiredOption('--underlay-cidrs <cidrs>', "where the cluster's node addresses live, comma separated (pinned by connect: each node address must lie inside)")
    .option('--service-cidr <cidr>', "the range service VIPs come from (default: the one stored by an earlier enable, else 100.127.<id>.0/24); must not overlap pod or node addresses")
    .option('--relay', 'make this cluster a hub: its nodes relay traffic between the clusters they reach (hub-and-spoke)')
    .option('--max-connected-clusters <n>', 'mesh-wide cluster-id layout, the same in every cluster: 255 (default) or 511 (15 local identity bits)', (v) => {
      if (v !== '255' && v !== '511') throw new InvalidArgumentError('255 or 511');
      return Number(v) as 255 | 511;
    })
    .action(async (o: { cluster: string; id: number; podCidr: string; underlayCidrs: string; serviceCidr?: string; etcd: string; relay?: boolean; maxConnectedClusters?: 255 | 511 }) => {
      const { enableCluster } = await import('../controlplane/clustermesh.js');
      const layout = o.maxConnectedClusters === 511 ? { maxConnectedClusters: 511 as const } : {};
      for (const w of await enableCluster(etcdOptions(o), { name: o.cluster, id: o.id, podCIDRs: o.podCidr.split(','), underlayCIDRs: o.underlayCidrs.split(','), ...(o.serviceCidr ? { serviceCIDR: o.serviceCidr } : {}), ...(o.relay ? { relay: true } : {}), ...layout })) console.warn(`warning: ${w}`);
      console.log(`cluster ${o.cluster} (id ${o.id}) enabled${o.relay ? ' as a relay hub' : ''}`);
    });
  withEtcdFlags(withEtcdFlags(cm.command('connect').description('connect two clusters (both directions)'), 'a'), 'b')
    .option('--a-pki <dir>', "cluster A's PKI folder: issues B's read-only certificate")
    .option('--b-pki <dir>', "cluster B's PKI folder: issues A's read-only certificate")
    .option('--a-accept-policies', "A enforces B's mesh-wide policies (default: replicated, not enforced)")
    .option('--b-accept-policies', "B enforces A's mesh-wide policies")
    .option('--a-relay-cidrs <cidrs>', "what A lets hub B relay to it, comma separated (default: the pod CIDRs in shared/private space of the clusters B is connected to now)")
    .option('--b-relay-cidrs <cidrs>', 'what B lets hub A relay to it')
    .action(async (o: Record<string, string>) => {
      const { connectClusters } = await import('../controlplane/clustermesh.js');
      const relay = (v: string | undefined) => (v === undefined ? undefined : v.split(',').filter(Boolean));
      const opts = { aAcceptsPolicies: Boolean(o.aAcceptPolicies), bAcceptsPolicies: Boolean(o.bAcceptPolicies), aRelayCIDRs: relay(o.aRelayCidrs), bRelayCIDRs: relay(o.bRelayCidrs) };
      const { a, b, aPin, bPin, warnings } = await connectClusters(side(o, 'a'), side(o, 'b'), opts);
      console.log(`connected ${a.name} <-> ${b.name}`);
      for (const w of warnings) console.log(`WARNING: ${w}`);
      // the ranges each side now admits the other's node addresses in (and a hub's relayed CIDRs: routes into its
      // tunnel): the operator checks them (a public block?)
      for (const [c, pin, by] of [[b, aPin, a], [a, bPin, b]] as const) {
        const hub = pin.relayCIDRs ? `; hub: relays to ${by.name} ${pin.relayCIDRs.join(', ') || `NOTHING (no clusters behind it now: connect again later, or --${by === a ? 'a' : 'b'}-relay-cidrs)`}` : '';
        console.log(`pinned ${c.name}: underlay CIDRs ${(c.underlayCIDRs ?? []).join(', ')}; pod CIDRs ${c.podCIDRs.join(', ')}${hub}`);
      }
    });
  withEtcdFlags(withEtcdFlags(cm.command('disconnect').description('disconnect two clusters'), 'a'), 'b')
    .option('--a-pki <dir>', "cluster A's PKI folder (revokes B's read-only user)")
    .option('--b-pki <dir>', "cluster B's PKI folder (revokes A's read-only user)")
    .action(async (o: Record<string, string>) => {
      const { disconnectClusters } = await import('../controlplane/clustermesh.js');
      await disconnectClusters(side(o, 'a'), side(o, 'b'));
      console.log('disconnected');
    });
  withEtcdFlags(cm.command('status').description("this cluster's mesh: remotes, sync state, nodes"))
    .option('--json', 'JSON output')
    .action(async (o: { etcd: string; json?: boolean }) => {
      const { meshStatus } = await import('../controlplane/clustermesh.js');
      const { meshStatusJson, meshStatusLines } = await import('./meshstatus.js');
      const s = await meshStatus(etcdOptions(o));
      if (o.json) return void console.log(meshStatusJson(s));
      for (const line of meshStatusLines(s)) console.log(line);
    });

  withOptionalEtcdFlags(
    program
      .command('apply')
      .description("validate manifests (Service, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, NetworkPolicy, Namespace) and store them in a cluster's etcd")
      .requiredOption('-f, --file <files...>', 'YAML files (several documents each)')
      .requiredOption('--cluster <name>', 'the cluster to apply to'),
  )
    .option('--dry-run', 'only validate')
    .action(async (o: { file: string[]; cluster: string; etcd?: string; etcdCa?: string; etcdCert?: string; etcdKey?: string; dryRun?: boolean }) => {
      const { loadManifests, applyManifests, appliedPolicyWarnings } = await import('../manifests/apply.js');
      const manifests = loadManifests(o.file);
      if (o.dryRun) return void console.log(`${manifests.length} manifest(s) valid`);
      if (!o.etcd) {
        // testbed addresses exist only inside the testbed: re-run there
        const { resolve } = await import('node:path');
        return void (process.exitCode = await inTestbed(o.cluster, ['apply', '-f', ...o.file.map((f) => resolve(f))]));
      }
      const access = etcdOptions({ etcd: o.etcd, etcdCa: o.etcdCa, etcdCert: o.etcdCert, etcdKey: o.etcdKey });
      const applied = await applyManifests(access, o.cluster, manifests);
      for (const a of applied) console.log(`${a} applied to ${o.cluster}`);
      // what the agents will report in GET /v1/policy: a named port no pod declares, an unknown namespace, ...
      for (const w of await appliedPolicyWarnings(access, o.cluster, manifests)) console.log(`WARNING: ${w}`);
    });

  registerObjectCommands(program);

  program
    .command('observe')
    .description('flow records (verdicts, drop reasons, identities) from agents, as text or JSON')
    .option('--socket <paths...>', "agents' API sockets (default: every agent of the testbed)")
    .option('--testbed <name>', 'the testbed whose agents to read (when several are up)')
    .option('-f, --follow', 'keep streaming new flows')
    .option('--last <n>', 'flows of history per agent', '100')
    .option('--verdict <v>', 'FORWARDED or DROPPED')
    .option('--cluster <name>', 'either side in this cluster')
    .option('--pod <[ns/]name>', 'either side is this pod')
    .option('--namespace <ns>', 'either side in this namespace')
    .option('--identity <n>', 'either side has this identity')
    .option('--port <n>', 'either side uses this port')
    .option('-o, --output <format>', 'text or json', 'text')
    .option('--max <n>', 'stop after this many flows')
    .action(async (o: { socket?: string[]; testbed?: string; follow?: boolean; last: string; verdict?: string; cluster?: string; pod?: string; namespace?: string; identity?: string; port?: string; output: string; max?: string }) => {
      const { observe } = await import('./observe.js');
      const num = (v: string | undefined, f: string): number | undefined => {
        if (v === undefined) return undefined;
        if (!/^\d+$/.test(v)) throw new ConfigError(f, `must be a number, got ${JSON.stringify(v)}`);
        return Number(v);
      };
      if (!['text', 'json'].includes(o.output)) throw new ConfigError('--output', 'must be text or json');
      if (o.verdict && !['FORWARDED', 'DROPPED'].includes(o.verdict.toUpperCase())) throw new ConfigError('--verdict', 'must be FORWARDED or DROPPED');
      const sockets = await agentSockets(o.socket, o.testbed);
      await observe(
        { sockets, follow: !!o.follow, last: num(o.last, '--last')!, json: o.output === 'json', verdict: o.verdict, cluster: o.cluster, pod: o.pod, namespace: o.namespace, identity: num(o.identity, '--identity'), port: num(o.port, '--port'), max: num(o.max, '--max') },
        (line) => console.log(line),
      );
    });

  const svc = program.command('service').description('global services');
  svc
    .command('list')
    .description('services with their backends per cluster, health and Maglev table size, as agents see them')
    .option('--socket <paths...>', "agents' API sockets (default: every agent of the testbed)")
    .option('--testbed <name>', 'the testbed whose agents to read (when several are up)')
    .option('--node <cluster/node>', 'only this testbed node')
    .option('-o, --output <format>', 'text, wide (every backend) or json', 'text')
    .action(async (o: { socket?: string[]; testbed?: string; node?: string; output: string }) => {
      const { listServices, formatServices } = await import('./services.js');
      if (!['text', 'wide', 'json'].includes(o.output)) throw new ConfigError('--output', 'must be text, wide or json');
      const sockets = await agentSockets(o.socket, o.testbed, o.node);
      const listings = await listServices(sockets);
      if (o.output === 'json') return void console.log(JSON.stringify(listings, null, 2));
      for (const line of formatServices(listings, o.output === 'wide')) console.log(line);
    });

  program
    .command('ui')
    .description('a web dashboard of the mesh: clusters, nodes, tunnels, global services, live flow verdicts')
    .option('--socket <paths...>', "agents' API sockets (default: every agent of the testbed)")
    .option('--testbed <name>', 'the testbed whose agents to read (when several are up)')
    .option('--port <n>', 'port to serve on', '8300')
    .option('--host <address>', 'address to serve on', '127.0.0.1')
    .action(async (o: { socket?: string[]; testbed?: string; port: string; host: string }) => {
      const { MeshDashboard } = await import('../ui/server.js');
      if (!/^\d+$/.test(o.port) || Number(o.port) < 1 || Number(o.port) > 65535) throw new ConfigError('--port', `must be a port number, got ${JSON.stringify(o.port)}`);
      const dash = new MeshDashboard(await agentSockets(o.socket, o.testbed));
      await dash.listen(Number(o.port), o.host);
      console.log(`wiremesh dashboard on http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}/ (Ctrl-C to stop)`);
    });

  const podCmd = program.command('pod').description("pods as network namespaces on this node (the docker-compose testbed's nodes use it)");
  podCmd
    .command('add <name>')
    .description("create network namespace pod-NAME with IP, wire it to this node and register it with the node's agent")
    .requiredOption('--ip <address>', "the pod's address (in this node's pod CIDR)")
    .option('--namespace <ns>', 'Kubernetes namespace', 'default')
    .option('--labels <k=v,...>', 'labels', '')
    .option('--port <NAME:PORT[/PROTO]>', 'a named container port, e.g. serve-80-tcp:80/TCP (repeatable; PROTO TCP, UDP or SCTP, default TCP)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--socket <path>', "the node agent's API socket", '/run/wiremesh/agent.sock')
    .action(async (name: string, o: { ip: string; namespace: string; labels: string; port: string[]; socket: string }) => {
      const { wirePod } = await import('../testbed/pod.js');
      const { parsePortFlags } = await import('../policy/ports.js');
      const ports = parsePortFlags(o.port);
      const labels: Record<string, string> = {};
      for (const kv of o.labels.split(',').filter(Boolean)) {
        const i = kv.indexOf('=');
        if (i <= 0) throw new ConfigError('--labels', `"${kv}" is not key=value`);
        labels[kv.slice(0, i)] = kv.slice(i + 1);
      }
      await wirePod({ netns: `pod-${name}`, name, namespace: o.namespace, labels, ...(ports.length ? { ports } : {}), ip: o.ip, socket: o.socket });
      console.log(`pod ${o.namespace}/${name} ${o.ip} in network namespace pod-${name}`);
    });
  registerPodLabel(podCmd);

  const pol = program.command('policy').description('network policy tools');
  withOptionalEtcdFlags(pol.command('trace').description('explain the verdict for a new flow and the rule that decides it'))
    .requiredOption('--cluster <name>', "the cluster whose etcd to read (it caches every connected cluster's state)")
    .requiredOption('--src <endpoint>', 'CLUSTER/NAMESPACE/POD, NAMESPACE/POD, POD or an IP address (comma-separated: several)')
    .requiredOption('--dst <endpoint>', 'CLUSTER/NAMESPACE/POD, NAMESPACE/POD, POD or an IP address (comma-separated: several)')
    .option('--dport <port>', 'destination port (comma-separated: several)', '0')
    .option('--proto <protocol>', 'TCP, UDP, SCTP, ICMP or ICMPv6', 'TCP')
    .option('--no-default-local-cluster', "as the agents' policy.defaultLocalCluster: false")
    .option('--max-endpoints-per-node <n>', "as the agents' admission.maxEndpointsPerNode (default: their default)")
    .option('--json', 'JSON output')
    .action(async (o: { cluster: string; src: string; dst: string; dport: string; proto: string; defaultLocalCluster: boolean; maxEndpointsPerNode?: string; json?: boolean; etcd?: string; etcdCa?: string; etcdCert?: string; etcdKey?: string }) => {
      for (const port of o.dport.split(',')) if (!/^\d+$/.test(port) || Number(port) > 65535) throw new ConfigError('--dport', `${JSON.stringify(port)} is not a port number`);
      const maxEndpointsPerNode = o.maxEndpointsPerNode === undefined ? undefined : Number(o.maxEndpointsPerNode);
      if (maxEndpointsPerNode !== undefined && !(Number.isInteger(maxEndpointsPerNode) && maxEndpointsPerNode >= 1)) throw new ConfigError('--max-endpoints-per-node', 'must be a whole number >= 1');
      if (!o.etcd) {
        const { testbedClusterAccess, cliIn } = await import('../testbed/testbed.js');
        const { netns, flags } = testbedClusterAccess(o.cluster);
        const rest = ['--cluster', o.cluster, '--src', o.src, '--dst', o.dst, '--dport', o.dport, '--proto', o.proto, ...(o.defaultLocalCluster ? [] : ['--no-default-local-cluster']), ...(o.maxEndpointsPerNode ? ['--max-endpoints-per-node', o.maxEndpointsPerNode] : []), ...(o.json ? ['--json'] : [])];
        return void process.stdout.write(cliIn(netns, ['policy', 'trace', ...flags, ...rest]));
      }
      const { connectEtcd } = await import('../controlplane/kvstore.js');
      const { loadMeshState, resolveEndpoint, trace, formatTrace } = await import('../policy/trace.js');
      const etcd = connectEtcd(etcdOptions({ etcd: o.etcd, etcdCa: o.etcdCa, etcdCert: o.etcdCert, etcdKey: o.etcdKey }));
      try {
        const st = await loadMeshState(etcd, { maxEndpointsPerNode });
        // comma-separated lists trace every combination (a connectivity matrix)
        const results = [];
        for (const src of o.src.split(','))
          for (const dst of o.dst.split(','))
            for (const port of o.dport.split(',')) results.push(trace(st, resolveEndpoint(st, src, o.cluster), resolveEndpoint(st, dst, o.cluster), o.proto, Number(port), o.defaultLocalCluster));
        if (o.json) console.log(JSON.stringify(results.length === 1 ? results[0] : results, null, 2));
        else console.log(results.map(formatTrace).join('\n\n'));
      } finally {
        etcd.close();
      }
    });

  program.enablePositionalOptions();
  registerTestbed(program, progress);

  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith('commander.')) return exitCodeFor(err);
    if (err instanceof ConfigError) process.stderr.write(`error: ${err.field}: ${err.message.slice(err.field.length + 2)}\n`);
    else if (err instanceof WiremeshError) process.stderr.write(`error (${err.code}): ${err.message}\n`);
    else process.stderr.write(`error: ${(err as Error).message}\n`);
    return exitCodeFor(err);
  }
}
