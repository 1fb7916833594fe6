/**
 * Import rules checked by scripts/test-all.sh (npx depcruise src): no import
 * cycles, and the daemon (agent, control plane, data plane) never imports the
 * CLI, which is a client of it: the daemon must build and run without
 * src/cli/. The operator tools (cli, testbed, chaos, demo, ui) may import the
 * CLI's helpers.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'an import cycle: modules that need each other to load are one module split in two',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'daemon-not-cli',
      severity: 'error',
      comment: 'the daemon imports from src/cli/: move what both need out of src/cli/',
      from: { path: '^src/', pathNot: '^src/(cli|testbed|chaos|demo|ui)/' },
      to: { path: '^src/cli/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
