/**
 * Loaded into each kvstoremesh with `node --import` by bench:controlplane's --profile-kvstoremesh-churn DIR (the
 * anchor's too: nothing in the measured code changes): the first SIGUSR2 starts V8's CPU profiler in the process,
 * the second stops it and writes DIR/kvstoremesh-<pid>.cpuprofile, so that a profile holds the churn window alone
 * (--cpu-prof profiles the whole process, where the initial sync of ~11,000 records per remote dominates).
 * DIR comes from WIREMESH_PROFILE_DIR; sampling every 1 ms, as profileWindows (cp-profile.ts).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.WIREMESH_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  const post = <T>(method: string, params?: object) =>
    new Promise<T>((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));
  let on = false;
  // one toggle at a time: a second signal while the previous is being handled waits for it
  let chain: Promise<void> = post('Profiler.enable').then(() => post('Profiler.setSamplingInterval', { interval: 1000 }));
  process.on('SIGUSR2', () => {
    chain = chain.then(async () => {
      if (!on) await post('Profiler.start');
      else writeFileSync(join(dir, `kvstoremesh-${process.pid}.cpuprofile`), JSON.stringify((await post<{ profile: unknown }>('Profiler.stop')).profile));
      on = !on;
    }, () => undefined);
  });
}
