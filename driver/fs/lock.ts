/**
 * One mutation at a time. Reads and getattr run freely (their answers come from the cache and
 * the layers), but changes to the tree are serialized so a copy-up that awaits its data never
 * interleaves with another change to the same entries.
 */
export class MutationLock {
  private tail: Promise<unknown> = Promise.resolve();

  /** `counter.busy` is raised while a mutation runs (the dentry cache does not evict then). */
  constructor(private readonly counter: { busy: number }) {}

  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const result = this.tail.then(async () => {
      this.counter.busy++;
      try {
        return await fn();
      } finally {
        this.counter.busy--;
      }
    });
    // The chain continues whether this step failed or not.
    this.tail = result.catch(() => undefined);
    return result;
  }
}
