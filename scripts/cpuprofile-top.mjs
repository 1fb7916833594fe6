#!/usr/bin/env node
/**
 * Self time by function of V8 .cpuprofile files (node --cpu-prof, or bench:controlplane --profile-agent).
 * Usage: node scripts/cpuprofile-top.mjs [--top N] FILE...  (several files are summed: a window range)
 * Prints the total sampled seconds, then per function "self ms, % of total, name file:line", heaviest first,
 * and the same grouped by file.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const args = process.argv.slice(2);
let top = 40;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--top') top = Number(args[++i]);
  else files.push(args[i]);
}
if (files.length === 0) {
  console.error('usage: node scripts/cpuprofile-top.mjs [--top N] FILE...');
  process.exit(2);
}
const byFn = new Map();
const byFile = new Map();
let total = 0;
let wall = 0;
for (const f of files) {
  const p = JSON.parse(readFileSync(f, 'utf8'));
  const nodes = new Map(p.nodes.map((n) => [n.id, n]));
  // Each sample weighs one sampling interval (the median gap between samples): Node marks no idle time, so
  // the gap after a sample taken just before the thread blocked spans the idle time and would count it as busy.
  const gaps = [...(p.timeDeltas ?? [])].sort((a, b) => a - b);
  const interval = gaps.length ? gaps[gaps.length >> 1] : 1000;
  wall += (p.endTime - p.startTime) / 1e6;
  p.samples.forEach((id) => {
    const us = interval;
    const cf = nodes.get(id).callFrame;
    if (cf.functionName === '(idle)') return; // the thread waited (epoll): not CPU
    const file = cf.url ? basename(cf.url) : '';
    const key = `${cf.functionName || '(anonymous)'} ${file}:${cf.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + us);
    byFile.set(file || cf.functionName, (byFile.get(file || cf.functionName) ?? 0) + us);
    total += us;
  });
}
const show = (title, m) => {
  console.log(`\n${title}`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${(us / 1000).toFixed(0).padStart(9)} ms ${((100 * us) / total).toFixed(1).padStart(5)} %  ${k}`);
};
console.log(`${files.length} profile(s) over ${wall.toFixed(1)} s: ${(total / 1e6).toFixed(1)} s sampled on the JavaScript thread (${(total / 1e6 / wall).toFixed(2)} of the wall time; a native call that waits, such as execFileSync, counts as on the thread)`);
show('self time by function', byFn);
show('self time by file', byFile);
