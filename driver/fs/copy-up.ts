/**
 * The copy-up gate: the only way an entry of a lower layer becomes writable. Parents first; the
 * copy is built under a temporary name in the work directory (data, owner, mode, xattrs,
 * nanosecond times) and renamed into the upper in one step, so a crash never leaves a partial
 * entry in the merged view. Data moves in the kernel (copy_file_range, holes preserved) on the
 * libuv threadpool, never through a JS loop.
 */
import { constants as fsc, fsync } from 'node:fs';
import { sys } from '../native/sys.js';
import { check, checkValue, E, FsError } from './errno.js';
import { isPrivateXattr, setRedirect } from './encoding.js';
import { parentRel, type Layer } from './layers.js';
import type { Node, Source } from './node.js';
import { newStat, S, S_IFMT, S_IFREG, S_IFLNK, S_IFDIR, statAtime, statMtime, statSize } from './stat.js';
import type { Union } from './union.js';

export interface CopyUpStats {
  copyUps: number;
  bytesCopied: number;
}

export const copyUpStats: CopyUpStats = { copyUps: 0, bytesCopied: 0 };

let tmpCounter = 0;

/** A fresh name inside the work directory. */
export function workName(): string {
  return `#strata-${process.pid}-${++tmpCounter}`;
}

function copyData(src: number, dst: number): Promise<number> {
  return new Promise((resolve, reject) => {
    sys.copyData(src, dst, (res) => (res < 0 ? reject(new FsError(-res, 'copy-up data')) : resolve(res)));
  });
}

function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/** Make sure `node` has an entry in the upper layer. `withData: false` copies metadata only
 *  (for an entry about to be truncated to zero). Callers hold the mutation lock. */
export async function copyUp(u: Union, node: Node, withData = true): Promise<void> {
  if (node.inUpper || node.hiddenName !== null) return;
  if (u.upper === null) throw new FsError(E.EROFS);
  if (node.unlinked) {
    // An open, unlinked lower file being changed: its copy stays in the work dir until released.
    await copyUpNonDir(u, node, withData, false);
    return;
  }
  if (node.parent !== null) copyUpDir(u, node.parent);
  if (node.kind === 'dir') copyUpDir(u, node);
  else await copyUpNonDir(u, node, withData, true);
}

/** Directories carry no data, so their copy-up is synchronous. */
export function copyUpDir(u: Union, dir: Node): void {
  if (dir.inUpper) return;
  if (dir.parent !== null) copyUpDir(u, dir.parent);
  const upper = u.upper!;
  const src = dir.dir?.lowerSources[0] ?? dir.lower!;
  const st = newStat();
  check(sys.lstatAt(src.layer.fd, src.path, st), 'copy-up stat ' + src.path);
  const tmp = workName();
  const wfd = u.stack.workFd;
  try {
    check(sys.mkdirAt(wfd, tmp, st[S.mode]! & 0o7777), 'copy-up mkdir');
    applyMeta(wfd, tmp, src, st, false);
    const rel = dir.rel();
    // A directory reached through a redirect (or renamed) keeps finding its lower content.
    if (src.path !== rel) check(setRedirect(wfd, tmp, src.path), 'set redirect');
    setTimes(wfd, tmp, st);
    moveIntoUpper(upper, wfd, tmp, rel);
  } catch (err) {
    sys.unlinkAt(wfd, tmp, sys.AT_REMOVEDIR);
    throw err;
  }
  dir.inUpper = true;
  copyUpStats.copyUps++;
}

async function copyUpNonDir(u: Union, node: Node, withData: boolean, intoUpper: boolean): Promise<void> {
  const upper = u.upper!;
  const src = node.lower!;
  const st = newStat();
  check(sys.lstatAt(src.layer.fd, src.path, st), 'copy-up stat ' + src.path);
  const tmp = workName();
  const wfd = u.stack.workFd;
  const fmt = st[S.mode]! & S_IFMT;
  try {
    if (fmt === S_IFREG) {
      await copyRegular(src, st, wfd, tmp, withData);
    } else if (fmt === S_IFLNK) {
      const target = checkValue(sys.readlinkAt(src.layer.fd, src.path), 'copy-up readlink');
      check(sys.symlinkAt(target, wfd, tmp), 'copy-up symlink');
      applyMeta(wfd, tmp, src, st, true);
      setTimes(wfd, tmp, st);
    } else if (fmt !== S_IFDIR) {
      check(sys.mknodAt(wfd, tmp, st[S.mode]!, st[S.rdev]!), 'copy-up mknod');
      applyMeta(wfd, tmp, src, st, false);
      setTimes(wfd, tmp, st);
    }
    if (!intoUpper) {
      node.hiddenName = tmp;
      return;
    }
    // The parent may have been renamed while the data was copying: take its path now.
    moveIntoUpper(upper, wfd, tmp, node.rel());
  } catch (err) {
    sys.unlinkAt(wfd, tmp, 0);
    throw err;
  }
  node.inUpper = true;
  copyUpStats.copyUps++;
}

/**
 * Rename the finished copy into the upper. A copy-up is not a change of the parent directory,
 * so its times are put back as they were (as the kernel does).
 */
function moveIntoUpper(upper: Layer, wfd: number, tmp: string, rel: string): void {
  const parent = parentRel(rel);
  const pst = newStat();
  const havePst = sys.lstatAt(upper.fd, parent, pst) === 0;
  // NOREPLACE: a copy-up never overwrites an upper entry (it would if the view were stale).
  check(sys.renameAt2(wfd, tmp, upper.fd, rel, sys.RENAME_NOREPLACE), 'copy-up rename ' + rel);
  if (havePst) setTimes(upper.fd, parent, pst);
}

async function copyRegular(src: Source, st: Uint32Array, wfd: number, tmp: string, withData: boolean): Promise<void> {
  const dst = check(sys.openAt(wfd, tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600), 'copy-up create');
  try {
    if (withData && statSize(st) > 0) {
      const from = check(sys.openAt(src.layer.fd, src.path, fsc.O_RDONLY | sys.O_NOFOLLOW, 0), 'copy-up open ' + src.path);
      try {
        copyUpStats.bytesCopied += await copyData(from, dst);
      } finally {
        sys.close(from);
      }
    }
    check(sys.fchown(dst, st[S.uid]!, st[S.gid]!), 'copy-up chown');
    // chown clears setuid/setgid and security.capability, so mode and xattrs come after it.
    check(sys.fchmod(dst, st[S.mode]! & 0o7777), 'copy-up chmod');
    copyXattrs(src.layer, src.path, wfd, tmp);
    const a = statAtime(st);
    const m = statMtime(st);
    check(sys.futimens(dst, a.sec, a.nsec, m.sec, m.nsec), 'copy-up times');
    // Like the kernel: the copy is durable before it replaces the lower entry in the view.
    await fsyncFd(dst);
  } finally {
    sys.close(dst);
  }
}

/** Owner, mode and xattrs of a new work entry, in the order that keeps each (chown clears bits). */
function applyMeta(wfd: number, tmp: string, src: Source, st: Uint32Array, symlink: boolean): void {
  check(sys.chownAt(wfd, tmp, st[S.uid]!, st[S.gid]!), 'copy-up chown');
  if (!symlink) check(sys.chmodAt(wfd, tmp, st[S.mode]! & 0o7777), 'copy-up chmod');
  copyXattrs(src.layer, src.path, wfd, tmp);
}

function setTimes(wfd: number, tmp: string, st: Uint32Array): void {
  const a = statAtime(st);
  const m = statMtime(st);
  check(sys.utimensAt(wfd, tmp, a.sec, a.nsec, m.sec, m.nsec), 'copy-up times');
}

function copyXattrs(layer: Layer, path: string, wfd: number, tmp: string): void {
  const names = sys.listxattrAt(layer.fd, path);
  if (typeof names === 'number') return;
  for (const name of names) {
    if (isPrivateXattr(name)) continue;
    const value = sys.getxattrAt(layer.fd, path, name);
    if (typeof value === 'number') continue;
    const r = sys.setxattrAt(wfd, tmp, name, value, 0);
    // user.* cannot be set on symlinks or devices: the kernel's copy-up skips those too.
    if (r < 0 && -r !== E.EPERM && -r !== E.EOPNOTSUPP) throw new FsError(-r, 'copy-up xattr ' + name);
  }
}
