/**
 * What ADD does beyond COPY: a local tar (plain, gzip, bzip2, xz, zstd) is unpacked into the
 * destination directory, and an http(s) URL is downloaded. Tar entry names are never trusted:
 * `..` and absolute names are refused, every path is resolved inside the rootfs, and a hard link
 * may only point at an entry unpacked before it.
 */
import {
  closeSync, constants as fsc, createReadStream, createWriteStream, fchmodSync, fchownSync, futimesSync, lchownSync,
  linkSync, lstatSync, lutimesSync, chmodSync, mkdirSync, openSync, readSync, rmSync, symlinkSync, writeSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, type Header as Headers } from 'tar-stream';
import { decompressed } from '../driver/store/compression.js';
import { cleanName } from '../driver/store/apply.js';
import { resolveInRoot } from './fs/in-root.js';
import { mkdirInRoot, type Ownership } from './copy.js';
import { getUrl } from '../net/http.js';

export class AddError extends Error {}

/** A tar, or a compressed stream (then assumed to hold one), by its first bytes. */
export async function isArchive(path: string): Promise<boolean> {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(512);
    const n = readSync(fd, b, 0, 512, 0);
    const head = b.subarray(0, n);
    if (head[0] === 0x1f && head[1] === 0x8b) return true;
    if (head.subarray(0, 3).toString('latin1') === 'BZh') return true;
    if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return true;
    if (head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return true;
    return n === 512 && head.subarray(257, 262).toString('latin1') === 'ustar';
  } finally {
    closeSync(fd);
  }
}

/** Unpack the archive at `path` into the container directory `dest`. */
export async function extractArchive(path: string, rootfs: string, dest: string, owner: Ownership | undefined): Promise<void> {
  mkdirInRoot(rootfs, dest);
  const { stream } = await decompressed(createReadStream(path));
  const ex = tarExtract();
  const seen = new Set<string>();
  const dirTimes: Array<[string, Date]> = [];
  ex.on('entry', (h: Headers, body, next) => {
    const done = (err?: unknown) => (err === undefined ? next() : ex.destroy(err as Error));
    try {
      const rel = cleanName(h.name);
      if (rel === '') {
        body.resume();
        body.on('end', () => done());
        return;
      }
      const target = posix.join(dest, rel);
      mkdirInRoot(rootfs, posix.dirname(target));
      const host = posix.join(resolveInRoot(rootfs, posix.dirname(target)), posix.basename(target));
      const existing = lstatSync(host, { throwIfNoEntry: false });
      if (existing !== undefined && !(existing.isDirectory() && h.type === 'directory')) rmSync(host, { recursive: true, force: true });
      const uid = owner?.uid ?? h.uid ?? 0;
      const gid = owner?.gid ?? h.gid ?? 0;
      const finish = () => {
        lchownSync(host, uid, gid);
        if (h.type !== 'symlink') chmodSync(host, (h.mode ?? 0o644) & 0o7777);
        if (h.type === 'directory') dirTimes.push([host, h.mtime ?? new Date()]);
        else if (h.type !== 'link') lutimesSync(host, h.mtime ?? new Date(), h.mtime ?? new Date());
        seen.add(rel);
      };
      switch (h.type) {
        case 'directory':
          if (existing === undefined || !existing.isDirectory()) mkdirSync(host);
          finish();
          break;
        case 'symlink':
          symlinkSync(h.linkname ?? '', host);
          finish();
          break;
        case 'link': {
          const to = cleanName(h.linkname ?? '');
          if (!seen.has(to)) throw new AddError(`${h.name}: hard link to ${h.linkname}, which is not earlier in the archive`);
          linkSync(posix.join(resolveInRoot(rootfs, posix.dirname(posix.join(dest, to))), posix.basename(to)), host);
          seen.add(rel);
          break;
        }
        case 'file':
        case 'contiguous-file': {
          const out = createWriteStream(host, { mode: 0o600 });
          pipeline(body, out).then(() => {
            try {
              finish();
              done();
            } catch (err) {
              done(err);
            }
          }, done);
          return;
        }
        default:
          // Devices and fifos: Docker's ADD skips what it cannot create unprivileged; so does strata.
          break;
      }
      body.resume();
      body.on('end', () => done());
    } catch (err) {
      body.resume();
      done(err);
    }
  });
  try {
    await pipeline(stream, ex);
  } catch (err) {
    throw new AddError(`${posix.basename(path)}: ${(err as Error).message}`);
  }
  // Never through a symlink: a later entry may have replaced a directory with one.
  for (const [host, t] of dirTimes.reverse()) if (lstatSync(host, { throwIfNoEntry: false })?.isDirectory()) lutimesSync(host, t, t);
}

/** ADD https://...: the file downloaded to dest (or into it), mode 0600 as Docker gives it. */
export async function addFromUrl(
  url: string,
  rootfs: string,
  dest: string,
  destIsDir: boolean,
  owner: Ownership | undefined,
  mode: number | undefined,
  checksum: string | undefined,
  fail: (message: string) => never,
): Promise<void> {
  let res: IncomingMessage;
  let body: Buffer;
  try {
    res = await getUrl(url, 60_000);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    body = Buffer.concat(chunks);
  } catch (err) {
    fail(`failed to fetch ${url}: ${(err as Error).message}`);
  }
  const name = posix.basename(new URL(url).pathname);
  if (destIsDir && name === '') fail(`cannot determine a file name from ${url}; give a destination file name`);
  if (checksum !== undefined) {
    const got = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (got !== checksum) fail(`${url}: the download's digest is ${got}, not the --checksum ${checksum}`);
  }
  const target = destIsDir ? posix.join(dest, name) : dest;
  mkdirInRoot(rootfs, posix.dirname(target));
  // Resolved inside the rootfs, a symlink at the target included (as Docker does); the file is then
  // made anew, never written through whatever is there.
  const host = resolveInRoot(rootfs, target);
  // A symlink may lead to a directory the image lacks: made, inside the rootfs.
  mkdirInRoot(rootfs, '/' + posix.relative(rootfs, posix.dirname(host)));
  const existing = lstatSync(host, { throwIfNoEntry: false });
  if (existing?.isDirectory()) fail(`cannot write ${url} over the directory ${target}`);
  if (existing !== undefined) rmSync(host, { force: true });
  const fd = openSync(host, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, body);
    // chown before chmod: chown clears setuid and setgid.
    if (owner !== undefined) fchownSync(fd, owner.uid, owner.gid);
    fchmodSync(fd, mode ?? 0o600);
    const modified = res.headers['last-modified'];
    const t = modified === undefined ? null : new Date(modified);
    if (t !== null && !Number.isNaN(t.getTime())) futimesSync(fd, t, t);
  } finally {
    closeSync(fd);
  }
}

/** `--checksum=sha256:<hex>` as ADD accepts it, or why not. */
export function checksumError(checksum: string): string | null {
  return /^sha256:[0-9a-f]{64}$/.test(checksum) ? null : `--checksum=${checksum}: expected sha256:<64 hex digits>`;
}
