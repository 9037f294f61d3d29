/**
 * Layer tarballs arrive plain or compressed (gzip, bzip2, xz, zstd), recognised by their magic
 * bytes, never by file name. gzip is decompressed in-process; the others through Debian's own
 * decompressors, whose exit status is checked so corrupt input is an error, not a short tar.
 */
import { spawn } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

export type Compression = 'none' | 'gzip' | 'bzip2' | 'xz' | 'zstd';

export function detect(head: Buffer): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return 'zstd';
  return 'none';
}

/** Read until `n` bytes are buffered (or the stream ends), then put them back. */
async function peek(input: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let have = 0;
  await new Promise<void>((resolve, reject) => {
    const onReadable = () => {
      let c: Buffer | null;
      while (have < n && (c = input.read() as Buffer | null) !== null) {
        chunks.push(c);
        have += c.length;
      }
      if (have >= n) finish();
    };
    const finish = () => {
      input.off('readable', onReadable);
      input.off('end', finish);
      input.off('error', reject);
      resolve();
    };
    input.on('readable', onReadable);
    input.once('end', finish);
    input.once('error', reject);
    onReadable();
  });
  const head = Buffer.concat(chunks);
  if (head.length > 0) input.unshift(head);
  return head;
}

function external(input: Readable, cmd: string, what: string): Readable {
  const child = spawn(cmd, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out = new PassThrough();
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.on('error', (err) => out.destroy(new Error(`cannot run ${cmd} to decompress ${what} data: ${err.message}`)));
  input.on('error', (err) => {
    child.kill();
    out.destroy(err);
  });
  child.stdin.on('error', () => undefined); // the child may exit early on corrupt input; its status tells
  input.pipe(child.stdin);
  child.stdout.pipe(out, { end: false });
  let stdoutDone = false;
  let code: number | null | undefined;
  const settle = () => {
    if (!stdoutDone || code === undefined) return;
    if (code === 0) out.end();
    else out.destroy(new Error(`corrupt ${what} data (${cmd}: ${stderr.trim().split('\n')[0] || `exit ${code}`})`));
  };
  child.stdout.on('end', () => {
    stdoutDone = true;
    settle();
  });
  child.on('close', (c) => {
    code = c;
    settle();
  });
  return out;
}

/** The uncompressed stream of `input`, and what it was compressed with. */
export async function decompressed(input: Readable): Promise<{ stream: Readable; compression: Compression }> {
  const compression = detect(await peek(input, 6));
  switch (compression) {
    case 'none':
      return { stream: input, compression };
    case 'gzip': {
      // Output in 256 KiB pieces, not zlib's 16 KiB: a 200 MB layer was 13,000 callbacks, each
      // with its share of the tar parser's and the DiffID's per-chunk costs.
      const gunzip = createGunzip({ chunkSize: 256 << 10 });
      input.on('error', (err) => gunzip.destroy(err));
      const out = input.pipe(gunzip);
      return { stream: out, compression };
    }
    case 'bzip2':
      return { stream: external(input, 'bzip2', 'bzip2'), compression };
    case 'xz':
      return { stream: external(input, 'xz', 'xz'), compression };
    case 'zstd':
      return { stream: external(input, 'zstd', 'zstd'), compression };
  }
}
