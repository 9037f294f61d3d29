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
  lchownSync, lstatSync, lutimesSync, chmodSync, mkdirSync, readlinkSync, rmSync, symlinkSync,
  constants as fsc,
} from 'node:fs';
import * as fsp from 'node:fs/promises';
import { posix } from 'node:path';
import type { FileInfo } from './fs/file-info.js';
import { MountedRoot, type Ownership, type Root } from './fs/root.js';
import { walk, type Source, type SourceTree } from './context.js';

export class CopyError extends Error {}

export type { Ownership };

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
  return new MountedRoot(rootfs).mkdirp(dir, owner).host;
}

/** Files copied at once: the mount serves them in parallel, hiding each one's round trips. */
const FILES_IN_FLIGHT = 16;

export async function copyInto(root: Root, spec: CopySpec): Promise<void> {
  const destStat = root.stat(spec.dest);
  const intoDir = spec.destIsDir || destStat?.isDirectory() === true;
  // Directories this copy made or met, by container path: their children need no resolving.
  const hostDirs = new Map<string, string>();
  // Directories this copy created: nothing in them can be in the way, so no lookup is needed.
  const fresh = new Set<string>();
  const dirTimes: Array<[string, Date]> = [];
  // By container path: a later source's file replaces an earlier one's (the copies run later, in
  // parallel, and two of them must never race for one path).
  const fileJobs = new Map<string, () => Promise<void>>();
  for (const src of spec.sources) {
    // Only what this source itself created is known to be empty.
    fresh.clear();
    let target: string;
    if (src.stat.isDirectory()) target = spec.dest;
    else target = intoDir ? posix.join(spec.dest, posix.basename(src.rel === '' ? '/' : src.rel)) : spec.dest;
    const top = src.stat.isDirectory() ? target : posix.dirname(target);
    const made = root.mkdirp(top, spec.chown);
    hostDirs.set(top, made.host);
    if (made.created) fresh.add(top);
    for (const e of walk(spec.tree, src)) {
      // A directory source itself is the destination directory, which already exists.
      if (e.sub === '' && src.stat.isDirectory()) continue;
      const path = e.sub === '' ? target : posix.join(target, e.sub);
      const parent = hostDirs.get(posix.dirname(path)) ?? root.hostPath(posix.dirname(path));
      const host = posix.join(parent, posix.basename(path));
      const empty = fresh.has(posix.dirname(path));
      // Something else at this path from this source overrides an earlier source's file.
      if (!e.stat.isFile()) fileJobs.delete(path);
      if (e.stat.isDirectory()) {
        if (place(host, path, e.host, e.stat, spec, empty)) fresh.add(path);
        hostDirs.set(path, host);
        dirTimes.push([host, e.stat.mtime]);
      } else if (e.stat.isFile()) {
        fileJobs.delete(path);
        fileJobs.set(path, () => placeFile(host, path, e.host, e.stat, spec, empty));
      }
      else place(host, path, e.host, e.stat, spec, empty);
    }
  }
  const files = [...fileJobs.values()];
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < files.length) {
      try {
        await files[next++]!();
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  // Every copy in flight ends before the error goes on: the caller unmounts next.
  const results = await Promise.allSettled(Array.from({ length: Math.min(FILES_IN_FLIGHT, files.length) }, worker));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected !== undefined) throw rejected.reason;
  // Directory times last, deepest first: adding their entries changed them.
  for (const [host, t] of dirTimes.reverse()) lutimesSync(host, t, t);
}

function ownerOf(spec: CopySpec): Ownership {
  return spec.chown ?? { uid: 0, gid: 0 };
}

/**
 * Directories and symlinks (the files go through placeFile). `inNew`: the parent was created by
 * this copy. Answers whether a directory was created.
 */
function place(host: string, path: string, from: string, st: FileInfo, spec: CopySpec, inNew: boolean): boolean {
  const existing = inNew ? undefined : lstatSync(host, { throwIfNoEntry: false });
  const owner = ownerOf(spec);
  if (st.isDirectory()) {
    const made = existing === undefined || !existing.isDirectory();
    if (existing !== undefined && !existing.isDirectory()) rmSync(host, { force: true });
    if (made) mkdirSync(host);
    lchownSync(host, owner.uid, owner.gid);
    chmodSync(host, spec.chmod ?? st.mode & 0o7777);
    return made;
  }
  if (!st.isSymbolicLink()) throw new CopyError(`${from}: only files, directories and symlinks can be copied`);
  if (existing?.isDirectory()) throw new CopyError(`cannot copy ${from} over the directory ${path}`);
  if (existing !== undefined) rmSync(host, { force: true });
  symlinkSync(readlinkSync(from), host);
  lchownSync(host, owner.uid, owner.gid);
  lutimesSync(host, st.mtime, st.mtime);
  return false;
}

async function placeFile(host: string, path: string, from: string, st: FileInfo, spec: CopySpec, inNew: boolean): Promise<void> {
  const existing = inNew ? undefined : await fsp.lstat(host).catch(() => undefined);
  if (existing?.isDirectory()) throw new CopyError(`cannot copy ${from} over the directory ${path}`);
  if (existing !== undefined) await fsp.rm(host, { force: true });
  await fsp.copyFile(from, host, fsc.COPYFILE_EXCL);
  // Each call is a FUSE round trip: a file root creates is root's already, and copyFile gave it
  // the source's mode; only what differs is set.
  const owner = ownerOf(spec);
  const chown = owner.uid !== 0 || owner.gid !== 0 || process.getuid?.() !== 0;
  if (chown) await fsp.lchown(host, owner.uid, owner.gid);
  // After chown, which clears setuid and setgid.
  if (spec.chmod !== undefined || chown) await fsp.chmod(host, spec.chmod ?? st.mode & 0o7777);
  await fsp.lutimes(host, st.mtime, st.mtime);
}
