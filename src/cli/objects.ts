/**
 * `wiremesh get` and `wiremesh delete`: the stored objects of a cluster
 * (whatever kinds `wiremesh apply` takes), as kubectl shows and deletes them.
 * Both take apply's etcd flags (root: operator credentials); without --etcd
 * they re-run inside the testbed that has the cluster, keeping the exit status.
 * Exit statuses: src/cli/exitcodes.ts.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ConfigError, NotFoundError } from '../errors.js';
import { EXIT } from './exitcodes.js';
import { etcdOptions, withOptionalEtcdFlags } from './etcdflags.js';
import { formatObjects, formatTable, parseOutput } from './get.js';

interface EtcdFlags {
  cluster: string;
  etcd?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
}

/** Runs `wiremesh ARGS` in the testbed namespace that reaches the cluster's etcd, output passed through; its exit status. */
export async function inTestbed(cluster: string, args: string[]): Promise<number> {
  const { testbedClusterAccess, WIREMESH } = await import('../testbed/testbed.js');
  const { netns, flags } = testbedClusterAccess(cluster);
  const r = spawnSync('ip', ['netns', 'exec', netns, process.execPath, WIREMESH, ...args, '--cluster', cluster, ...flags], { stdio: 'inherit' });
  return r.status ?? EXIT.failed;
}

type DeleteOpts = EtcdFlags & { file?: string[]; namespace?: string; ignoreNotFound?: boolean };
type GetOpts = EtcdFlags & { namespace?: string; allNamespaces?: boolean; output?: string };

export function registerObjectCommands(program: Command): void {
  withOptionalEtcdFlags(
    program
      .command('delete [kind] [names...]')
      .description('delete stored objects: every document of -f FILE (also kind: List), or KIND NAME... (svc, netpol, cnp, ccnp, ns, or the kind in any case, singular or plural)')
      .option('-f, --file <files...>', 'YAML files (as given to apply)')
      .option('-n, --namespace <ns>', 'namespace of KIND NAME (default: default)')
      .requiredOption('--cluster <name>', 'the cluster to delete from')
      .option('--ignore-not-found', 'a missing object is no error (exit status 0)'),
  ).action(async (kind: string | undefined, names: string[], o: DeleteOpts) => {
    const { loadManifests } = await import('../manifests/apply.js');
    const { objectRef, refOf, resolveKind } = await import('../manifests/kinds.js');
    if (o.file && kind) throw new ConfigError('--file', 'give either -f FILE or KIND NAME, not both');
    if (!o.file && (!kind || names.length === 0)) throw new ConfigError('KIND', 'give -f FILE or KIND NAME... (e.g. delete cnp allow-web -n shop)');
    // validated here, before any etcd: a typo is a usage error even in a testbed
    const refs = o.file ? loadManifests(o.file).map(refOf) : names.map((n) => objectRef(resolveKind(kind!), n, o.namespace));
    if (!o.etcd) {
      const args = o.file ? ['-f', ...o.file.map((f) => resolve(f))] : [kind!, ...names, ...(o.namespace ? ['-n', o.namespace] : [])];
      return void (process.exitCode = await inTestbed(o.cluster, ['delete', ...args, ...(o.ignoreNotFound ? ['--ignore-not-found'] : [])]));
    }
    const { deleteObjects } = await import('../manifests/store.js');
    const results = await deleteObjects(etcdOptions({ ...o, etcd: o.etcd }), o.cluster, refs);
    const missing = results.filter((r) => !r.deleted);
    for (const r of results) if (r.deleted) console.log(`${r.what} deleted from ${o.cluster}`);
    if (missing.length && !o.ignoreNotFound) {
      for (const r of missing) process.stderr.write(`error: ${r.what} not found in cluster ${o.cluster}\n`);
      process.exitCode = EXIT.notFound;
    }
  });

  withOptionalEtcdFlags(
    program
      .command('get <kind> [name]')
      .description("show stored objects of a kind (a table: NAME, the kind's columns, REVISION; -o yaml|json: the decoded objects)")
      .option('-n, --namespace <ns>', 'namespace (default: default)')
      .option('-A, --all-namespaces', 'every namespace')
      .option('-o, --output <format>', 'yaml, json or wide (default: a table)')
      .requiredOption('--cluster <name>', 'the cluster whose objects to show'),
  ).action(async (kindText: string, name: string | undefined, o: GetOpts) => {
    const { isClusterScoped, objectRef, resolveKind, describeRef } = await import('../manifests/kinds.js');
    const kind = resolveKind(kindText);
    const output = parseOutput(o.output);
    if (o.allNamespaces && o.namespace) throw new ConfigError('--all-namespaces', 'cannot be combined with --namespace');
    if (o.allNamespaces && name) throw new ConfigError('--all-namespaces', 'cannot be combined with a NAME');
    const ref = name ? objectRef(kind, name, o.namespace) : undefined;
    if (!o.etcd) {
      const args = ['get', kindText, ...(name ? [name] : []), ...(o.namespace ? ['-n', o.namespace] : []), ...(o.allNamespaces ? ['-A'] : []), ...(o.output ? ['-o', o.output] : [])];
      return void (process.exitCode = await inTestbed(o.cluster, args));
    }
    const { getObjects } = await import('../manifests/store.js');
    const namespace = isClusterScoped(kind) || o.allNamespaces ? undefined : (o.namespace ?? 'default');
    const listing = await getObjects(etcdOptions({ ...o, etcd: o.etcd }), o.cluster, kind, { ...(name ? { name } : {}), ...(namespace ? { namespace } : {}) });
    for (const e of listing.rejected) process.stderr.write(`warning: skipped a stored record that does not decode: ${e.message}\n`);
    if (ref && listing.items.length === 0) throw new NotFoundError(`${describeRef(ref)} not found in cluster ${o.cluster}`);
    if (output === 'json' || output === 'yaml') return void console.log(formatObjects(listing.items, ref !== undefined, output));
    if (listing.items.length === 0) {
      process.stderr.write(`No resources found${namespace ? ` in ${namespace} namespace` : ''} in cluster ${o.cluster}.\n`);
      return;
    }
    for (const line of formatTable(kind, listing.items, { allNamespaces: !!o.allNamespaces, namespaced: !isClusterScoped(kind), wide: output === 'wide' })) console.log(line);
  });
}
