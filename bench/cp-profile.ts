/**
 * bench:controlplane's look inside the measured agent (it runs in the benchmark's process):
 * - `--profile-agent DIR`: V8 CPU profiles of the process's JavaScript thread in consecutive windows
 *   (DIR/agent-<n>.cpuprofile, one per `windowS`), written while the run goes on, so a run that stalls and is
 *   killed by its timeout still leaves the profile of the stall. Read them with scripts/cpuprofile-top.mjs.
 * - threadCpu(): CPU seconds of the JavaScript thread and of the rest of the process (the addon's threads),
 *   from /proc/self/task, so a progress line tells which side is busy.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

/** Starts windowed CPU profiling into `dir`; the returned function writes the current window and stops. */
export function profileWindows(dir: string, windowS: number, log: (m: string) => void): () => Promise<void> {
  const session = new Session();
  session.connect();
  const post = <T>(method: string, params?: object) =>
    new Promise<T>((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));
  let n = 0;
  let stopped = false;
  const start = () => post('Profiler.setSamplingInterval', { interval: 1000 }).then(() => post('Profiler.start'));
  const flush = async () => {
    const { profile } = await post<{ profile: unknown }>('Profiler.stop');
    const file = join(dir, `agent-${String(n++).padStart(3, '0')}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    log(`  profile window written: ${file}`);
  };
  const ready = post('Profiler.enable').then(start);
  const timer = setInterval(() => {
    void ready.then(async () => {
      if (stopped) return;
      await flush();
      await start();
    });
  }, windowS * 1000);
  timer.unref();
  return async () => {
    stopped = true;
    clearInterval(timer);
    await ready;
    await flush();
    session.disconnect();
  };
}

/** CPU seconds used so far by this process's main (JavaScript) thread and by all its other threads. */
export function threadCpu(): { js: number; other: number } {
  const tick = 100; // CLK_TCK on Linux
  let js = 0;
  let other = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const s = (Number(f[11]) + Number(f[12])) / tick;
      if (Number(tid) === process.pid) js += s;
      else other += s;
    } catch {
      /* the thread ended */
    }
  }
  return { js, other };
}
