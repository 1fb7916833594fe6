/** The --etcd* flags of operator commands and what they become (EtcdOptions). */
import type { Command } from 'commander';
import type { EtcdOptions } from '../controlplane/kvstore.js';

export function etcdOptions(o: { etcd: string; etcdCa?: string; etcdCert?: string; etcdKey?: string }): EtcdOptions {
  return { endpoints: o.etcd.split(','), caFile: o.etcdCa, certFile: o.etcdCert, keyFile: o.etcdKey };
}

/** --etcd and its TLS files, optional: without --etcd, commands with --cluster re-run inside that testbed cluster. */
export function withOptionalEtcdFlags(cmd: Command): Command {
  return cmd
    .option('--etcd <urls>', "the cluster's etcd (default: the testbed that has this cluster)")
    .option('--etcd-ca <file>', 'CA certificate (PEM)')
    .option('--etcd-cert <file>', 'client certificate (PEM, root: operator)')
    .option('--etcd-key <file>', 'client key (PEM)');
}
