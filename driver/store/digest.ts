/**
 * Content identifiers of images and layers, as Docker and the OCI image spec define them:
 * DiffID (digest of the uncompressed layer tar), ChainID (the layer and everything under it) and
 * the image ID (digest of the config's exact bytes).
 */
import { createHash } from 'node:crypto';
import { sys } from '../native/sys.js';

export type Digest = `sha256:${string}`;

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function sha256(data: string | Buffer): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function isDigest(s: string): s is Digest {
  return DIGEST.test(s);
}

export function hexOf(d: Digest): string {
  return d.slice('sha256:'.length);
}

/** chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i]). */
export function chainId(parentChain: Digest | null, diffId: Digest): Digest {
  return parentChain === null ? diffId : sha256(`${parentChain} ${diffId}`);
}

export function chainIds(diffIds: Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const d of diffIds) out.push(chainId(out.length === 0 ? null : out[out.length - 1]!, d));
  return out;
}

/** The DiffID of the empty layer: a tar of exactly two zero blocks. */
export const EMPTY_LAYER_DIFF_ID: Digest = sha256(Buffer.alloc(1024));

/**
 * SHA-256 of a stream, hashed on the threadpool while the caller goes on (a layer's DiffID costs
 * the JS thread ~0.2 s per 200 MB otherwise). Chunks are hashed in order, one job at a time, and
 * must not change after update(); `drained` calls back once all are hashed. What arrives while a
 * job runs goes into the next job, as a list: a tar made in memory comes in thousands of 512-byte
 * pieces, and a threadpool job each would cost far more than the hashing.
 */
export class BackgroundDigest {
  private readonly d = sys.digestOpen();
  private queue: Buffer[] = [];
  private running = false;
  private failed = false;
  private waiter: (() => void) | null = null;

  update(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.queue.push(chunk);
    if (!this.running) this.next();
  }

  private next(): void {
    const batch = this.queue;
    if (batch.length === 0) {
      this.running = false;
      const w = this.waiter;
      this.waiter = null;
      w?.();
      return;
    }
    this.queue = [];
    this.running = true;
    sys.digestUpdate(this.d, batch.length === 1 ? batch[0]! : batch, (ok) => {
      if (!ok) this.failed = true;
      this.next();
    });
  }

  /** Call `done` once every chunk given so far is hashed. */
  drained(done: () => void): void {
    if (!this.running) done();
    else this.waiter = done;
  }

  /** The digest; only after drained() called back. */
  digest(): Digest {
    if (this.running) throw new Error('BackgroundDigest.digest() before the chunks were hashed');
    if (this.failed) throw new Error('hashing failed (OpenSSL)');
    return `sha256:${sys.digestFinish(this.d)}`;
  }
}
