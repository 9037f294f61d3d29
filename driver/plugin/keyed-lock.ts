/**
 * One call at a time per key. dockerd makes GraphDriver calls in parallel (a pull applies several
 * layers, containers start together), but Get and Put of one layer read and update its mount's
 * reference count, and Create, ApplyDiff and Remove of one layer follow each other: those must
 * not interleave. Calls on different layers run freely.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    const result = before.then(fn);
    // The chain goes on whether this call failed or not; the last one out removes it.
    const tail = result.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}
