/**
 * `wiremesh testbed …`: the multi-cluster testbed in network namespaces (src/testbed): up, down, latency,
 * status, exec. Each action loads its testbed module on use, so the other subcommands do not pay for it.
 */
import type { Command } from 'commander';
import { ConfigError } from '../errors.js';

/** Adds the `testbed` subcommands to `program`; progress() makes the line printer up/down report through. */
export function registerTestbed(program: Command, progress: () => (msg: string) => void): void {
  const tb = program.command('testbed').description('multi-cluster testbed in network namespaces').enablePositionalOptions();
  tb.command('up <file>')
    .description('build the topology in FILE')
    .action(async (file: string) => {
      const { testbedUp } = await import('../testbed/testbed.js');
      await testbedUp(file, progress());
    });
  tb.command('down <file>')
    .description('remove every namespace, process and file the testbed made')
    .action(async (file: string) => {
      const { testbedDown } = await import('../testbed/testbed.js');
      await testbedDown(file, progress());
    });
  tb.command('latency')
    .description("add underlay latency from one node toward every node of a cluster (runs until interrupted)")
    .requiredOption('--node <cluster/node>', 'the sending node')
    .requiredOption('--to <cluster>', 'the cluster whose nodes get further away')
    .requiredOption('--ms <n>', 'one-way delay in ms')
    .option('--testbed <name>', 'the testbed (when several are up)')
    .action(async (o: { node: string; to: string; ms: string; testbed?: string }) => {
      const { loadState } = await import('../testbed/testbed.js');
      const { addLatency } = await import('../testbed/latency.js');
      if (!/^\d+$/.test(o.ms) || Number(o.ms) > 10_000) throw new ConfigError('--ms', 'must be an integer 0..10000');
      const [cluster, node] = o.node.split('/');
      if (!cluster || !node) throw new ConfigError('--node', 'must be cluster/node');
      const remove = await addLatency(loadState(o.testbed), cluster, node, o.to, Number(o.ms));
      console.log(`${o.node} -> ${o.to}: +${o.ms} ms (Ctrl-C removes it)`);
      await new Promise<void>((r) => process.once('SIGINT', () => r()));
      await remove();
    });
  tb.command('delay-line <tun> <ms>', { hidden: true })
    .description('the latency device process (testbed latency starts it in a node namespace)')
    .action(async (tun: string, ms: string) => {
      const { runDelayLine } = await import('../testbed/latency.js');
      await runDelayLine(tun, Number(ms));
    });
  tb.command('status')
    .option('--name <name>', 'testbed name (when several are up)')
    .option('--json', 'JSON output')
    .action(async (o: { name?: string; json?: boolean }) => {
      const { testbedStatus, formatStatus } = await import('../testbed/testbed.js');
      const s = await testbedStatus(o.name);
      console.log(o.json ? JSON.stringify(s, null, 2) : formatStatus(s));
    });
  tb.command('exec <target> [cmd...]')
    .description('run CMD in CLUSTER/POD (or CLUSTER/NODE)')
    .option('--name <name>', 'testbed name (when several are up)')
    .passThroughOptions()
    .action(async (target: string, cmd: string[], o: { name?: string }) => {
      const { testbedExec } = await import('../testbed/testbed.js');
      process.exitCode = await testbedExec(target, cmd, o.name);
    });
}
