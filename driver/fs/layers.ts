/**
 * The layer stack: one writable upper directory (optional), read-only lower directories (top
 * first) and the work directory used to build entries before they are renamed into the upper.
 * Each layer is held open as a directory fd and every access is relative to it (the *at() calls),
 * so a path from the mount never leaves its layer and paths near PATH_MAX still work.
 */
import { constants as fsc } from 'node:fs';
import { sys } from '../native/sys.js';
import { E, FsError } from './errno.js';
import { S, S_IFDIR, S_IFMT, newStat } from './stat.js';

export class Layer {
  constructor(
    /** Position in the stack: 0 is the upper when there is one, then lowers top-down. */
    readonly index: number,
    readonly root: string,
    readonly fd: number,
    readonly writable: boolean,
    /** st_dev of the layer root (low 32 bits), used to keep inode numbers unique across layers. */
    readonly dev: number,
  ) {}
}

export interface LayerStack {
  upper: Layer | null;
  lowers: Layer[];
  /** Upper first, then lowers top-down. */
  all: Layer[];
  /** fd of <workdir>/work, where copy-ups and whiteouts are prepared; null without an upper. */
  workFd: number;
  workRoot: string | null;
  /** Whether all layers share one device, so real inode numbers are already unique. */
  singleDevice: boolean;
}

/** The relative path used for a layer root in *at() calls. */
export const ROOT = '.';

export function joinRel(dir: string, name: string): string {
  return dir === ROOT ? name : dir + '/' + name;
}

export function parentRel(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? ROOT : rel.slice(0, i);
}

export function baseName(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}

function openDir(path: string, what: string): { fd: number; dev: number } {
  const fd = sys.openAt(sys.AT_FDCWD, path, fsc.O_RDONLY | sys.O_DIRECTORY, 0);
  if (fd < 0) {
    const errno = -fd;
    const why = errno === E.ENOENT ? 'does not exist' : errno === E.ENOTDIR ? 'is not a directory' : `cannot be opened (${errno})`;
    throw new FsError(errno, `${what} ${path} ${why}`);
  }
  const st = newStat();
  sys.fstat(fd, st);
  if ((st[S.mode]! & S_IFMT) !== S_IFDIR) {
    sys.close(fd);
    throw new FsError(E.ENOTDIR, `${what} ${path} is not a directory`);
  }
  return { fd, dev: st[S.dev]! };
}

export interface StackPaths {
  lowers: string[];
  upper?: string | undefined;
  work?: string | undefined;
}

/**
 * Open every layer and prepare <work>/work (emptied of what a crashed driver left there).
 * Throws FsError with a message naming the bad path.
 */
export function openLayerStack(paths: StackPaths): LayerStack {
  const all: Layer[] = [];
  const opened: number[] = [];
  try {
    let upper: Layer | null = null;
    let workFd = -1;
    let workRoot: string | null = null;
    if (paths.upper !== undefined) {
      if (paths.work === undefined) throw new FsError(E.EINVAL, 'an upper directory needs a work directory');
      const u = openDir(paths.upper, 'upper directory');
      opened.push(u.fd);
      const w = openDir(paths.work, 'work directory');
      opened.push(w.fd);
      if (u.dev !== w.dev) {
        throw new FsError(E.EXDEV, `upper ${paths.upper} and work ${paths.work} must be on the same filesystem`);
      }
      upper = new Layer(0, paths.upper, u.fd, true, u.dev);
      all.push(upper);
      workFd = prepareWorkDir(w.fd);
      opened.push(workFd);
      sys.close(w.fd);
      opened.splice(opened.indexOf(w.fd), 1);
      workRoot = paths.work + '/work';
    }
    for (const root of paths.lowers) {
      const l = openDir(root, 'lower layer');
      opened.push(l.fd);
      all.push(new Layer(all.length, root, l.fd, false, l.dev));
    }
    if (all.length === 0 || paths.lowers.length === 0) throw new FsError(E.EINVAL, 'at least one lower layer is needed');
    const singleDevice = all.every((l) => l.dev === all[0]!.dev);
    return { upper, lowers: all.filter((l) => !l.writable), all, workFd, workRoot, singleDevice };
  } catch (err) {
    for (const fd of opened) sys.close(fd);
    throw err;
  }
}

/** Create <work>/work and remove whatever an interrupted copy-up or rename left in it. */
function prepareWorkDir(workParentFd: number): number {
  const mk = sys.mkdirAt(workParentFd, 'work', 0o700);
  if (mk < 0 && -mk !== E.EEXIST) throw new FsError(-mk, 'cannot create the work directory');
  const fd = sys.openAt(workParentFd, 'work', fsc.O_RDONLY | sys.O_DIRECTORY | sys.O_NOFOLLOW, 0);
  if (fd < 0) throw new FsError(-fd, 'cannot open the work directory');
  removeContents(fd, ROOT);
  return fd;
}

/** Remove everything below dirfd/rel (not rel itself). Used only inside the work directory. */
export function removeContents(dirfd: number, rel: string): void {
  const list = sys.readdirAt(dirfd, rel);
  if (typeof list === 'number') {
    if (-list === E.ENOENT) return;
    throw new FsError(-list, 'cannot list ' + rel);
  }
  for (const name of list.names) {
    const child = joinRel(rel, name);
    // Try the common case first; a directory answers EISDIR and is emptied, whatever d_type said.
    const r = sys.unlinkAt(dirfd, child, 0);
    if (r >= 0 || -r === E.ENOENT) continue;
    if (-r !== E.EISDIR) throw new FsError(-r, 'cannot remove ' + child);
    removeContents(dirfd, child);
    const d = sys.unlinkAt(dirfd, child, sys.AT_REMOVEDIR);
    if (d < 0) throw new FsError(-d, 'cannot remove ' + child);
  }
}

export function closeLayerStack(stack: LayerStack): void {
  for (const l of stack.all) sys.close(l.fd);
  if (stack.workFd >= 0) sys.close(stack.workFd);
}
