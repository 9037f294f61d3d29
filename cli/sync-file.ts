/**
 * A file written synchronously as a stream's destination. Archives are made of many small
 * entries, each waiting for the previous one to be taken; a write stream's threadpool round trip
 * per chunk left the producer idle most of the time. A CLI process has nothing else to do meanwhile.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { Writable } from 'node:stream';

export function syncFileSink(path: string, mode = 0o644): Writable {
  const fd = openSync(path, 'w', mode);
  let closed = false;
  const close = () => {
    if (!closed) closeSync(fd);
    closed = true;
  };
  return new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, done) {
      try {
        for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
        done();
      } catch (err) {
        done(err as Error);
      }
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
      try {
        close();
      } catch {
        // already failing
      }
      done(err);
    },
  });
}
