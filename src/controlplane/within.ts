/** A deadline on a promise that may never settle (a hung local etcd): kvstoremesh's status puts and stops. */

/** p's outcome, or `late` when p has not settled within ms (the timer goes when p settles first). p is not cancelled. */
export function within<T>(p: Promise<T>, ms: number, late: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<T>((r) => (timer = setTimeout(() => r(late), ms)));
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}
