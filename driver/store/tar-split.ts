/**
 * Layers are stored unpacked (directories a union can mount), yet a saved image must carry the
 * very tar bytes its DiffIDs were computed from. Like Docker's tar-split, strata keeps each
 * layer's tar minus the file contents: the raw bytes between file payloads (headers, PAX and
 * GNU long-name records, padding, the end-of-archive blocks) and, for each payload, which entry
 * it belongs to and its size. Replaying that with the files from the layer directory gives the
 * original stream back, byte for byte.
 *
 * The splitter only finds block boundaries; tar-stream does the real parsing beside it. Both walk
 * the same bytes in the same order, so the n-th entry of one is the n-th entry of the other.
 */
import { closeSync, createReadStream, openSync, write } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { createGunzip, gzip } from 'node:zlib';
import { BackgroundDigest, type Digest } from './digest.js';
import { StoreError } from './errors.js';

export type Segment = { raw: Buffer } | { entry: number; size: number };

/** A tar whose block structure is refused (the message says why). */
export class TarLayoutError extends Error {}

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

/** Headers whose data is more header (PAX records, GNU long names), as tar-stream reads them. */
const LONG_HEADER_TYPES = new Set(['x', 'g', 'L', 'K', 'N']);

function parseSize(block: Buffer): number {
  if (block[124]! & 0x80) {
    // Base-256 (GNU): big-endian in the remaining bytes of the field.
    let n = 0;
    for (let i = 125; i < 136; i++) n = n * 256 + block[i]!;
    return n;
  }
  const text = block.toString('latin1', 124, 136).replace(/[\0 ]+$/, '').trim();
  return text === '' ? 0 : parseInt(text, 8);
}

function paxSize(data: Buffer): number | null {
  let found: number | null = null;
  for (let off = 0; off < data.length; ) {
    const sp = data.indexOf(0x20, off);
    if (sp < 0) break;
    const len = parseInt(data.toString('latin1', off, sp), 10);
    if (!(len > 0)) break;
    const rec = data.toString('latin1', sp + 1, off + len - 1);
    if (rec.startsWith('size=') && /^\d+$/.test(rec.slice(5))) found = parseInt(rec.slice(5), 10);
    off += len;
  }
  return found;
}

type State = 'header' | 'long' | 'data' | 'pad' | 'zero' | 'trailer';

/**
 * A pass-through that digests the stream (the DiffID), counts it, and records its segments.
 * Call `finish()` after the stream ended to get the split.
 */
export class TarSplitter extends Transform {
  readonly segments: Segment[] = [];
  bytes = 0;
  private readonly hash = new BackgroundDigest();
  private state: State = 'header';
  private raw: Buffer[] = [];
  private pending = Buffer.alloc(0);
  private remaining = 0;
  private longType = '';
  private longData: Buffer[] = [];
  private nextSize: number | null = null;
  private padAfter = 0;
  private entries = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    let passed: number;
    try {
      passed = this.consume(chunk);
    } catch (err) {
      return done(err as Error);
    }
    // Only the archive proper goes on to the extractor: what follows the end-of-archive blocks is
    // part of the digest and of the split, never unpacked (GNU tar, Go and Docker stop there too).
    done(null, passed === chunk.length ? chunk : chunk.subarray(0, passed));
  }

  /** The stream ends only once every byte is hashed, so finish() can answer the digest. */
  override _flush(done: TransformCallback): void {
    this.hash.drained(() => done());
  }

  /** Account for `chunk`; answers how many of its bytes belong to the archive proper. */
  private consume(chunk: Buffer): number {
    let off = 0;
    while (off < chunk.length) {
      if (this.state === 'trailer') {
        this.raw.push(Buffer.from(chunk.subarray(off)));
        return off;
      }
      if (this.state === 'data') {
        const n = Math.min(this.remaining, chunk.length - off);
        this.remaining -= n;
        off += n;
        if (this.remaining === 0) {
          this.remaining = this.padAfter;
          this.state = this.padAfter > 0 ? 'pad' : 'header';
        }
        continue;
      }
      if (this.state === 'pad') {
        // Padding is kept raw: valid tars pad with zeros, but bytes are bytes.
        const n = Math.min(this.remaining, chunk.length - off);
        // Copied: a view would keep the whole input chunk alive for as long as the split.
        this.raw.push(Buffer.from(chunk.subarray(off, off + n)));
        this.remaining -= n;
        off += n;
        if (this.remaining === 0) this.state = 'header';
        continue;
      }
      if (this.state === 'long') {
        const n = Math.min(this.remaining, chunk.length - off);
        const part = Buffer.from(chunk.subarray(off, off + n));
        this.raw.push(part);
        this.longData.push(part);
        this.remaining -= n;
        off += n;
        if (this.remaining === 0) this.endLong();
        continue;
      }
      // header: gather one block
      const need = BLOCK - this.pending.length;
      const n = Math.min(need, chunk.length - off);
      this.pending = Buffer.concat([this.pending, chunk.subarray(off, off + n)]);
      off += n;
      if (this.pending.length === BLOCK) this.header(this.pending);
    }
    return chunk.length;
  }

  private header(block: Buffer): void {
    this.pending = Buffer.alloc(0);
    this.raw.push(block);
    const zero = block.equals(ZERO_BLOCK);
    if (this.state === 'zero') {
      // After one zero block only a second one may come: the end of the archive.
      if (!zero) throw new TarLayoutError('a lone zero block in the middle of the archive');
      this.state = 'trailer';
      return;
    }
    if (zero) {
      this.state = 'zero';
      return;
    }
    const type = String.fromCharCode(block[156]!);
    const size = parseSize(block);
    if (LONG_HEADER_TYPES.has(type)) {
      this.longType = type;
      this.longData = [];
      this.remaining = Math.ceil(size / BLOCK) * BLOCK;
      this.state = this.remaining > 0 ? 'long' : 'header';
      if (this.remaining === 0) this.endLong();
      return;
    }
    const entry = this.entries++;
    const dataSize = type === '5' ? 0 : this.nextSize ?? size;
    this.nextSize = null;
    if (dataSize === 0) return;
    this.segments.push({ raw: Buffer.concat(this.raw) });
    this.raw = [];
    this.segments.push({ entry, size: dataSize });
    this.remaining = dataSize;
    this.padAfter = (BLOCK - (dataSize % BLOCK)) % BLOCK;
    this.state = 'data';
  }

  private endLong(): void {
    if (this.longType === 'x') {
      const s = paxSize(Buffer.concat(this.longData));
      if (s !== null) this.nextSize = s;
    }
    this.longData = [];
    this.state = 'header';
  }

  /**
   * Remove and answer the segments ready to store: everything before the first payload of an
   * entry numbered `limit` or later (whose file may not be known yet).
   */
  ready(limit: number): Segment[] {
    let n = 0;
    while (n < this.segments.length) {
      const seg = this.segments[n]!;
      if ('entry' in seg && seg.entry >= limit) break;
      n++;
    }
    return this.segments.splice(0, n);
  }

  /** The digest of everything that went through, and the segments not taken yet. */
  finish(): { diffId: Digest; bytes: number; segments: Segment[] } {
    if (this.pending.length > 0) this.raw.push(this.pending);
    this.segments.push({ raw: Buffer.concat(this.raw) });
    this.raw = [];
    return { diffId: this.hash.digest(), bytes: this.bytes, segments: this.segments };
  }
}

/** A split as stored: payloads name the file (relative to the layer root) they come from. */
export type StoredSegment = { raw: Buffer } | { path: string; size: number };

/**
 * On disk a split is gzip members (one per megabyte or so, appended as the tar streams in) of
 * binary records: a tag byte, then for raw bytes (tag 0) a u32 length and the bytes, and for a
 * payload (tag 1) a u32 path length, the UTF-8 path and a u64 size.
 */
const MEMBER = 1 << 20;

function gzipMember(records: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => gzip(records, { level: 1 }, (err, out) => (err ? reject(err) : resolve(out))));
}

function writeAt(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => write(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/**
 * Writes a split to a file as it is produced, so memory does not grow with the layer. Members
 * are compressed and written on the threadpool (in order), not on the thread that parses the tar.
 */
export class SplitWriter {
  private readonly fd: number;
  /** Records not yet compressed, encoded in place: no allocation per record. */
  private buf = Buffer.allocUnsafe(2 * MEMBER);
  private used = 0;
  private written = 0;
  /** The members handed off so far, each written after the one before it. */
  private tail: Promise<void> = Promise.resolve();
  private failure: unknown = null;
  private closing: Promise<void> | null = null;

  constructor(path: string) {
    this.fd = openSync(path, 'wx', 0o600);
  }

  private room(n: number): void {
    if (this.used + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.used + n));
    this.buf.copy(bigger, 0, 0, this.used);
    this.buf = bigger;
  }

  add(segments: Segment[], pathOf: (entry: number) => string): void {
    // Its descriptor may be gone (and its number another file's) once close() ran.
    if (this.closing !== null) throw new Error('SplitWriter.add after close');
    // The split cannot be kept (a full disk): the layer is not worth unpacking further.
    if (this.failure !== null) throw this.stored(this.failure);
    for (const seg of segments) {
      if ('raw' in seg) {
        this.room(5 + seg.raw.length);
        this.buf[this.used] = 0;
        this.buf.writeUInt32LE(seg.raw.length, this.used + 1);
        seg.raw.copy(this.buf, this.used + 5);
        this.used += 5 + seg.raw.length;
      } else {
        const path = pathOf(seg.entry);
        const len = Buffer.byteLength(path);
        this.room(13 + len);
        this.buf[this.used] = 1;
        this.buf.writeUInt32LE(len, this.used + 1);
        this.buf.write(path, this.used + 5, 'utf8');
        // u64 as two u32: sizes stay below 2^53.
        this.buf.writeUInt32LE(seg.size % 2 ** 32, this.used + 5 + len);
        this.buf.writeUInt32LE(Math.floor(seg.size / 2 ** 32), this.used + 9 + len);
        this.used += 13 + len;
      }
    }
    if (this.used >= MEMBER) this.handOff();
  }

  /** Compress the records so far as one member (starting now) and queue its write. */
  private handOff(): void {
    if (this.used === 0) return;
    const member = gzipMember(this.buf.subarray(0, this.used));
    // Handled at once: its turn in the chain below may come after it failed.
    member.catch(() => undefined);
    this.buf = Buffer.allocUnsafe(2 * MEMBER);
    this.used = 0;
    this.tail = this.tail.then(async () => {
      let bytes: Buffer;
      try {
        bytes = await member;
      } catch (err) {
        this.failure ??= err;
        return;
      }
      if (this.failure !== null) return;
      try {
        for (let off = 0; off < bytes.length; ) {
          const n = await writeAt(this.fd, bytes, off, bytes.length - off, this.written);
          off += n;
          this.written += n;
        }
      } catch (err) {
        this.failure ??= err;
      }
    });
  }

  /**
   * Write what is left and close the file; rejects (a StoreError) with the first failure. Later
   * calls answer the same promise.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        this.handOff();
        await this.tail;
        if (this.failure !== null) throw this.stored(this.failure);
      } finally {
        closeSync(this.fd);
      }
    })();
    return this.closing;
  }

  private stored(failure: unknown): StoreError {
    return new StoreError(`cannot store the layer's tar-split: ${(failure as Error).message}`);
  }
}

/** The segments of a stored split, read as they are needed. */
export async function* readSplit(path: string): AsyncGenerator<StoredSegment> {
  let buf: Buffer = Buffer.alloc(0);
  const input = createReadStream(path).pipe(createGunzip());
  for await (const chunk of input) {
    buf = buf.length === 0 ? (chunk as Buffer) : Buffer.concat([buf, chunk as Buffer]);
    let off = 0;
    for (;;) {
      if (buf.length - off < 5) break;
      const tag = buf.readUInt8(off);
      const len = buf.readUInt32LE(off + 1);
      const need = 5 + len + (tag === 1 ? 8 : 0);
      if (buf.length - off < need) break;
      if (tag === 0) yield { raw: Buffer.from(buf.subarray(off + 5, off + 5 + len)) };
      else if (tag === 1) yield { path: buf.toString('utf8', off + 5, off + 5 + len), size: Number(buf.readBigUInt64LE(off + 5 + len)) };
      else throw new Error(`bad tar-split record in ${path}`);
      off += need;
    }
    buf = buf.subarray(off);
  }
  if (buf.length > 0) throw new Error(`truncated tar-split ${path}`);
}
