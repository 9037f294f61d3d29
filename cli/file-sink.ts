/**
 * A file as a stream's destination, written on the threadpool in batches. Archives are made of
 * many small entries (a 512-byte header, a few KB of body): one write per chunk left the producer
 * waiting on each round trip, and synchronous writes put the copy into the page cache (a quarter
 * of an export's time) on the JS thread. Here every chunk that arrives while a write is in flight
 * goes into the next writev, so the JS thread goes on making the archive meanwhile.
 */
import { closeSync, openSync, writev } from 'node:fs';
import { Writable } from 'node:stream';

/** Chunks buffered before the producer is told to wait. */
const BUFFERED = 8 << 20;

export function fileSink(path: string, mode = 0o644): Writable {
  const fd = openSync(path, 'w', mode);
  let closed = false;
  let destroyed = false;
  /** The writev on the threadpool, if one runs: the descriptor must outlive it. */
  let writing: Promise<void> | null = null;
  const close = () => {
    if (closed) return;
    // Marked first: a close that fails must not be tried again on a number reused since.
    closed = true;
    closeSync(fd);
  };
  return new Writable({
    highWaterMark: BUFFERED,
    writev(chunks, done) {
      writing = new Promise((settled) =>
        writeAll(fd, chunks.map((c) => c.chunk as Buffer), () => destroyed, (err) => {
          writing = null;
          settled();
          done(err);
        }),
      );
    },
    final(done) {
      try {
        close();
        done();
      } catch (err) {
        done(err as Error);
      }
    },
    destroy(err, done) {
      destroyed = true;
      const release = () => {
        try {
          close();
        } catch {
          // already failing
        }
      };
      // The descriptor waits for a write in flight; the error does not: reported later, it would
      // reach no listener (a pipeline that failed has already let go of this stream).
      if (writing === null) release();
      else void writing.then(release);
      done(err);
    },
  });
}

/**
 * libuv loops over partial writes and IOV_MAX, but a failure after some bytes (ENOSPC) comes back
 * as a short count, not an error: the rest is written again, which reports the error. A stream
 * destroyed meanwhile writes no more.
 */
function writeAll(fd: number, bufs: Buffer[], stopped: () => boolean, done: (err?: Error | null) => void): void {
  const total = bufs.reduce((n, b) => n + b.length, 0);
  writev(fd, bufs, (err, written) => {
    if (err !== null || written === total) return done(err);
    if (written === 0) return done(new Error('the file takes no more data'));
    if (stopped()) return done(new Error('the archive was abandoned'));
    let skip = written;
    const rest: Buffer[] = [];
    for (const b of bufs) {
      if (skip >= b.length) skip -= b.length;
      else {
        rest.push(skip > 0 ? b.subarray(skip) : b);
        skip = 0;
      }
    }
    writeAll(fd, rest, stopped, done);
  });
}
