#!/usr/bin/env node
// Structure check run by scripts/test-all.sh before the tests: every TypeScript
// file under src/ and every C++ file under native/src/ stays below MAX_LINES
// lines (small files, one concern each). Prints each offender with its line
// count, largest first, and exits 1 if there is any; else prints the largest
// file of each kind and exits 0.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const MAX_LINES = 450;
const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const kinds = [
  { what: 'TypeScript', dir: 'src', ext: /\.(ts|mts|cts)$/ },
  { what: 'C++', dir: join('native', 'src'), ext: /\.(cc|cpp|cxx|h|hh|hpp)$/ },
];

/** Every file below dir (relative to the repository) whose name matches ext. */
function walk(dir, ext) {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && ext.test(e.name))
    .map((e) => relative(root, join(e.parentPath ?? e.path, e.name)));
}

/** Lines as an editor counts them: a last line without its newline counts too. */
const lineCount = (file) => {
  const text = readFileSync(join(root, file), 'utf8');
  return text.length === 0 ? 0 : text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
};

let failed = false;
for (const k of kinds) {
  const sized = walk(k.dir, k.ext)
    .map((file) => ({ file, lines: lineCount(file) }))
    .sort((a, b) => b.lines - a.lines);
  const over = sized.filter((f) => f.lines >= MAX_LINES);
  if (over.length) {
    failed = true;
    console.log(`${k.what} files of ${MAX_LINES} lines or more:`);
    for (const f of over) console.log(`  ${String(f.lines).padStart(5)}  ${f.file}`);
  } else if (sized[0]) console.log(`largest ${k.what} file: ${sized[0].file} (${sized[0].lines} lines, limit ${MAX_LINES})`);
}
process.exit(failed ? 1 : 0);
