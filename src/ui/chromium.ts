/**
 * Headless Chromium (Debian's chromium-headless-shell) for the dashboard: a
 * PNG of the page, or its DOM, after the page's script has run (a virtual
 * time budget lets its first polls finish without waiting in real time).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { HostError } from '../errors.js';

const BIN = 'chromium-headless-shell';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--window-size=1500,1900', '--virtual-time-budget=4000'];

export function hasChromium(): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${BIN}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(BIN, [...FLAGS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += String(d)));
    c.stderr.on('data', (d: Buffer) => (err += String(d)));
    c.once('error', reject);
    c.once('exit', (code) => (code === 0 ? resolve(out) : reject(new HostError('WM_UI_SCREENSHOT', `${BIN} exited ${code}: ${err.slice(-400)}`))));
  });
}

export async function screenshot(url: string, file: string): Promise<void> {
  await run([`--screenshot=${file}`, url]);
  if (!existsSync(file)) throw new HostError('WM_UI_SCREENSHOT', `${BIN} wrote no screenshot to ${file}`);
}

/** The page's DOM as HTML after its script ran. */
export function dumpDom(url: string): Promise<string> {
  return run(['--dump-dom', url]);
}
