#!/usr/bin/env node
// grpc-js sets the TLS servername to the etcd address even when it is an IP
// (Node warns, DEP0123); certificates are still checked against the IP SAN.
const emit = process.emitWarning;
process.emitWarning = (warning, ...args) => {
  const code = typeof args[0] === 'object' ? args[0]?.code : args[1];
  if (code === 'DEP0123') return;
  return emit.call(process, warning, ...args);
};
const { main } = await import('../dist/src/cli/wiremesh.js');
process.exitCode = await main(process.argv.slice(2));
