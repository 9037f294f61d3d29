/**
 * gzip on every CPU: the input cut into 1 MiB blocks, each compressed as a gzip member of its own
 * on the threadpool, the members written in order. A concatenation of members is one valid gzip
 * stream (RFC 1952), which Go's readers (Docker, containerd, skopeo), zlib and strata read as a
 * whole. One zlib stream compresses ~35 MB/s here on hard-to-compress data, which made a push of a
 * 200 MB layer take 13 s; pigz and Go's pgzip, which skopeo uses, split the work the same way.
 *
 * A block whose first 16 KiB do not shrink by 10% is stored instead (deflate's stored blocks, at
 * copying speed): data already compressed (archives, images, a random test tree) gains little
 * from zlib but costs all of its time, ~4x the upload's on a local network. Btrfs decides the same
 * way from a sample. Ordinary layers (binaries, text) shrink by 40-70% and are compressed.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { availableParallelism } from 'node:os';
import { gzip } from 'node:zlib';

const BLOCK = 1 << 20;
const SAMPLE = 16 << 10;
/** A sample that compresses to more than this share of its size marks its block incompressible. */
const WORTH_IT = 0.9;

function gzipAsync(data: Buffer, level: number): Promise<Buffer> {
  // Room for the whole member's deflate data in one output chunk (deflate's worst case is a few
  // bytes per 16 KiB stored): with zlib's 16 KiB default, a 1 MiB block came back in 64 pieces,
  // each a round trip through JS, then joined. Now it is the data and the trailer.
  const chunkSize = data.length + (data.length >> 8) + 1024;
  return new Promise((resolve, reject) => gzip(data, { level, chunkSize }, (err, out) => (err ? reject(err) : resolve(out))));
}

/** One block as a gzip member, compressed if a sample says it is worth it (on the threadpool). */
async function member(block: Buffer, level: number): Promise<Buffer> {
  if (block.length > SAMPLE) {
    const trial = await gzipAsync(block.subarray(0, SAMPLE), level);
    if (trial.length > SAMPLE * WORTH_IT) return gzipAsync(block, 0);
  }
  return gzipAsync(block, level);
}

export function parallelGzip(level = 6): Transform {
  const inFlight = Math.max(4, 2 * availableParallelism());
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  /** Compressed members in input order; each settles when its block is done. */
  const queue: Array<Promise<Buffer>> = [];
  let failed: Error | null = null;

  const submit = (block: Buffer) => {
    const m = member(block, level);
    m.catch((err: Error) => (failed ??= err));
    queue.push(m);
  };
  const cut = (all: boolean) => {
    while (pendingBytes >= BLOCK || (all && pendingBytes > 0)) {
      const joined = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      const take = Math.min(BLOCK, joined.length);
      submit(joined.subarray(0, take));
      const rest = joined.subarray(take);
      pending = rest.length > 0 ? [rest] : [];
      pendingBytes = rest.length;
    }
  };
  /** Push finished members; with `wait`, wait until at most `keep` blocks are in flight. */
  const drain = async (t: Transform, keep: number) => {
    while (queue.length > keep) t.push(await queue.shift()!);
  };

  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      if (failed !== null) return done(failed);
      pending.push(chunk);
      pendingBytes += chunk.length;
      cut(false);
      drain(this, inFlight).then(() => done(), done);
    },
    flush(done: TransformCallback) {
      cut(true);
      // An empty input is still one gzip stream (of nothing).
      if (queue.length === 0) submit(Buffer.alloc(0));
      drain(this, 0).then(() => done(), done);
    },
  });
}
