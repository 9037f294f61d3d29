/**
 * One mutation at a time. Reads and getattr run freely (their answers come from the cache and
 * the layers), but changes to the tree are serialized so a copy-up that awaits its data never
 * interleaves with another change to the same entries.
 */
export class MutationLock {
  private tail: Promise<unknown> = Promise.resolve();
  /** Mutations queued or running; while 0, a new one may run at once. */
  private inFlight = 0;

  /** `counter.busy` is raised while a mutation runs (the dentry cache does not evict then). */
  constructor(private readonly counter: { busy: number }) {}

  run<T>(fn: () => T | Promise<T>): Promise<T> {
    this.inFlight++;
    const result = this.tail.then(async () => {
      this.counter.busy++;
      try {
        return await fn();
      } finally {
        this.counter.busy--;
        this.inFlight--;
      }
    });
    // The chain continues whether this step failed or not.
    this.tail = result.catch(() => undefined);
    return result;
  }

  /**
   * Run `fn` under the lock, then `done` with its result or `failed` with its error. When no
   * other mutation is queued or running (nearly always) a synchronous `fn` runs and answers at
   * once: most mutations are a few syscalls, and a trip through the promise queue costs more.
   */
  submit<T>(fn: () => T | Promise<T>, done: (result: T) => void, failed: (err: unknown) => void): void {
    if (this.inFlight > 0) {
      this.run(fn).then(done, failed);
      return;
    }
    let result: T | Promise<T>;
    this.counter.busy++;
    try {
      result = fn();
    } catch (err) {
      this.counter.busy--;
      failed(err);
      return;
    }
    if (!(result instanceof Promise)) {
      this.counter.busy--;
      done(result);
      return;
    }
    // It went asynchronous (a copy-up awaiting its data): later mutations queue behind it.
    this.inFlight++;
    const settled = result.finally(() => {
      this.counter.busy--;
      this.inFlight--;
    });
    this.tail = settled.catch(() => undefined);
    settled.then(done, failed);
  }
}
