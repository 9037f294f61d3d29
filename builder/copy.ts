/**
 * COPY (and ADD of local files) into a mounted rootfs, by Docker's rules: a directory source
 * copies its contents; several sources, a wildcard, or a destination ending in `/` mean the
 * destination is a directory; a single file goes into an existing directory or becomes the
 * destination path. Files keep their mode and mtime; owners are root's unless --chown; --chmod
 * sets the mode of everything copied. Every destination is resolved inside the rootfs.
 *
 * This runs in the CLI process, never in the one serving the mount, so plain fs calls on the
 * mount are safe.
 */
import {
  copyFileSync, lchownSync, lstatSync, lutimesSync, chmodSync, mkdirSync, readlinkSync, rmSync,
  symlinkSync, constants as fsc,
} from 'node:fs';
import { posix } from 'node:path';
import { resolveInRoot } from './fs/in-root.js';
import { walk, type Source, type SourceTree } from './context.js';

export class CopyError extends Error {}

export interface Ownership {
  uid: number;
  gid: number;
}

export interface CopySpec {
  tree: SourceTree;
  sources: Source[];
  /** Absolute path in the container. */
  dest: string;
  /** The destination is a directory: it ended in '/', or there are several or wildcard sources. */
  destIsDir: boolean;
  chown?: Ownership;
  chmod?: number;
}

/** Make `dir` (container path) and missing parents, as directories of the rootfs. */
export function mkdirInRoot(rootfs: string, dir: string, owner: Ownership = { uid: 0, gid: 0 }): string {
  ensureDir(rootfs, dir, owner);
  return resolveInRoot(rootfs, dir);
}

/** mkdirInRoot that says whether it created anything. */
export function ensureDir(rootfs: string, dir: string, owner: Ownership = { uid: 0, gid: 0 }): boolean {
  let cur = '/';
  let created = false;
  for (const part of dir.split('/').filter((p) => p !== '')) {
    cur = posix.join(cur, part);
    const host = resolveInRoot(rootfs, cur);
    const st = lstatSync(host, { throwIfNoEntry: false });
    if (st === undefined) {
      mkdirSync(host, { mode: 0o755 });
      chmodSync(host, 0o755);
      lchownSync(host, owner.uid, owner.gid);
      created = true;
    } else if (!st.isDirectory()) {
      throw new CopyError(`${cur} exists and is not a directory`);
    }
  }
  return created;
}

export function copyInto(rootfs: string, spec: CopySpec): void {
  const destHost = resolveInRoot(rootfs, spec.dest);
  const destStat = lstatSync(destHost, { throwIfNoEntry: false });
  const intoDir = spec.destIsDir || destStat?.isDirectory() === true;
  for (const src of spec.sources) {
    let target: string;
    if (src.stat.isDirectory()) target = spec.dest;
    else target = intoDir ? posix.join(spec.dest, posix.basename(src.rel === '' ? '/' : src.rel)) : spec.dest;
    mkdirInRoot(rootfs, src.stat.isDirectory() ? target : posix.dirname(target), spec.chown);
    for (const e of walk(spec.tree, src)) {
      // A directory source itself is the destination directory, which already exists.
      if (e.sub === '' && src.stat.isDirectory()) continue;
      const path = e.sub === '' ? target : posix.join(target, e.sub);
      place(rootfs, path, e.host, e.stat, spec);
    }
  }
}

function place(rootfs: string, path: string, from: string, st: import('node:fs').Stats, spec: CopySpec): void {
  const parent = resolveInRoot(rootfs, posix.dirname(path));
  const host = posix.join(parent, posix.basename(path));
  const existing = lstatSync(host, { throwIfNoEntry: false });
  const owner = spec.chown ?? { uid: 0, gid: 0 };
  if (st.isDirectory()) {
    if (existing !== undefined && !existing.isDirectory()) rmSync(host, { force: true });
    if (existing === undefined || !existing.isDirectory()) mkdirSync(host);
  } else {
    if (existing?.isDirectory()) throw new CopyError(`cannot copy ${from} over the directory ${path}`);
    if (existing !== undefined) rmSync(host, { force: true });
    if (st.isSymbolicLink()) symlinkSync(readlinkSync(from), host);
    else if (st.isFile()) copyFileSync(from, host, fsc.COPYFILE_EXCL);
    else throw new CopyError(`${from}: only files, directories and symlinks can be copied`);
  }
  // Each call is a FUSE round trip: a file root creates is root's already, and copyFile gave it
  // the source's mode; only what differs is set.
  const chown = owner.uid !== 0 || owner.gid !== 0 || st.isDirectory() || process.getuid?.() !== 0;
  if (chown) lchownSync(host, owner.uid, owner.gid);
  // After chown, which clears setuid and setgid.
  if (st.isDirectory() || (st.isFile() && (spec.chmod !== undefined || chown))) chmodSync(host, spec.chmod ?? st.mode & 0o7777);
  lutimesSync(host, st.mtime, st.mtime);
}
