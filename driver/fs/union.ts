/**
 * The merged view: top-down lookup through the dentry cache, directory merging (whiteouts,
 * opaque directories, redirects), stat with stable inode numbers, and listing. Lower layers are
 * only ever read here; every write goes through copy-up.ts and mutations.ts.
 */
import { sys } from '../native/sys.js';
import { E, fsErr, FsError } from './errno.js';
import {
  ancestorsAreDirs,
  hasTarWhiteout,
  isReservedName,
  isWhiteoutStat,
  isXattrWhiteout,
  OPAQUE_MARKER,
  readDirMarks,
  WH_PREFIX,
  type Redirect,
} from './encoding.js';
import { joinRel, Layer, ROOT, type LayerStack } from './layers.js';
import { DentryCache, Node, type DirState, type Kind, type Source } from './node.js';
import { newStat, S, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, setStatIno, statIno, statSize } from './stat.js';

export interface UnionOptions {
  /** Bound on cached directory entries. */
  maxCacheEntries: number;
}

interface MergeSource extends Source {
  xattrWhiteouts: boolean;
}

export class Union {
  readonly cache: DentryCache;
  readonly root: Node;
  readonly upper: Layer | null;
  /** The work dir seen as a layer: where open-but-unlinked files live until released. */
  readonly work: Layer | null;
  private readonly devIndex = new Map<number, number>();
  private readonly scratch = newStat();

  constructor(
    readonly stack: LayerStack,
    options: UnionOptions,
  ) {
    this.cache = new DentryCache(options.maxCacheEntries);
    this.upper = stack.upper;
    this.work = stack.upper === null ? null : new Layer(-1, stack.workRoot ?? '', stack.workFd, true, stack.upper.dev);
    const top = stack.lowers[0]!;
    this.root = new Node('', null, 'dir', stack.upper !== null, { layer: top, path: ROOT }, false);
    for (const l of stack.all) if (!this.devIndex.has(l.dev)) this.devIndex.set(l.dev, this.devIndex.size);
  }

  /** The child `name` of directory `dir` in the merged view, or undefined (a negative entry). */
  child(dir: Node, name: string): Node | undefined {
    const stats = this.cache.stats;
    stats.lookups++;
    const before = stats.misses;
    if (dir.kind !== 'dir') throw fsErr(E.ENOTDIR);
    const child = this.dirState(dir).children.get(name);
    if (stats.misses === before) stats.hits++;
    return child;
  }

  /** The loaded state of a directory node, loading it on first use. */
  dirState(dir: Node): DirState {
    const state = dir.dir;
    if (state !== undefined) {
      this.cache.touch(dir);
      return state;
    }
    this.cache.stats.misses++;
    const loaded = this.loadDir(dir);
    this.cache.loaded(dir, loaded);
    return loaded;
  }

  /** Where the visible entry of `node` lives: the upper, or its top-most lower. */
  location(node: Node): { layer: Layer; path: string } {
    if (node.hiddenName !== null) return { layer: this.work!, path: node.hiddenName };
    if (node.inUpper) return { layer: this.upper!, path: node.rel() };
    return node.lower!;
  }

  /** lstat the visible entry into `out`, with the node's stable inode number. */
  stat(node: Node, out: Uint32Array): void {
    const { layer, path } = this.location(node);
    const r = sys.lstatAt(layer.fd, path, out);
    if (r < 0) throw new FsError(-r, 'stat ' + path);
    this.applyIno(node, layer, out);
    node.links = out[S.nlink]!;
    this.adjustNlink(node, out);
    if (node.kind === 'dir' && node.dir !== undefined && node.dir.lowerSources.length > (node.inUpper ? 0 : 1)) {
      // Like the kernel, report nlink 1 for merged directories: the real count is unknowable cheaply.
      out[S.nlink] = 1;
    }
  }

  applyIno(node: Node, layer: Layer, st: Uint32Array): void {
    if (node.ino === 0) node.ino = this.mapIno(statIno(st), layer);
    setStatIno(st, node.ino);
  }

  /** The inode number shown for a layer's inode: unique across layers on other devices. */
  private mapIno(real: number, layer: Layer): number {
    const ino = this.stack.singleDevice ? real : real + (this.devIndex.get(layer.dev) ?? 0) * 2 ** 48;
    return ino === 0 ? 1 : ino;
  }

  /** An unlinked (still open) file reports the links it has left in the merged view. */
  adjustNlink(node: Node, st: Uint32Array): void {
    if (!node.unlinked) return;
    if (node.hiddenName !== null) st[S.nlink] = Math.max(0, st[S.nlink]! - 1);
    else if (!node.inUpper) st[S.nlink] = 0;
  }

  /** Lower directories merged under `dir`, following opaque marks and redirects. */
  private lowerSources(dir: Node, upperMarks: { opaque: boolean; redirect: Redirect | null } | null): MergeSource[] {
    const out: MergeSource[] = [];
    if (upperMarks?.opaque) return out;
    let redirect = upperMarks?.redirect ?? null;
    const parentSources = dir.parent === null ? null : this.dirState(dir.parent).lowerSources;
    for (const layer of this.stack.lowers) {
      let rel: string;
      if (redirect !== null && 'path' in redirect) {
        // A redirected path was not reached by walking this layer's directories: check the walk.
        if (!ancestorsAreDirs(layer, redirect.path)) continue;
        rel = redirect.path;
      } else if (parentSources === null) rel = ROOT;
      else {
        const ps = parentSources.find((s) => s.layer === layer);
        if (ps === undefined) continue;
        rel = joinRel(ps.path, redirect !== null ? redirect.name : dir.name);
      }
      const r = sys.lstatAt(layer.fd, rel, this.scratch);
      if (r < 0) {
        // Absent here; an OCI-form whiteout in this layer still hides the layers below.
        if (rel !== ROOT && hasTarWhiteout(layer, rel)) break;
        continue;
      }
      if ((this.scratch[S.mode]! & S_IFMT) !== S_IFDIR) break;
      const marks = readDirMarks(layer, rel);
      out.push({ layer, path: rel, xattrWhiteouts: marks.xattrWhiteouts });
      if (marks.opaque) break;
      if (rel !== ROOT && hasTarWhiteout(layer, rel)) break;
      if (marks.redirect !== null) redirect = marks.redirect;
    }
    return out;
  }

  private loadDir(dir: Node): DirState {
    const layers: MergeSource[] = [];
    let opaque = false;
    if (dir.inUpper) {
      const marks = readDirMarks(this.upper!, dir.rel());
      opaque = marks.opaque;
      layers.push({ layer: this.upper!, path: dir.rel(), xattrWhiteouts: marks.xattrWhiteouts });
      const lowers = this.lowerSources(dir, marks);
      layers.push(...lowers);
      return this.merge(dir, layers, lowers, opaque);
    }
    const lowers = this.lowerSources(dir, null);
    return this.merge(dir, lowers, lowers, false);
  }

  private merge(dir: Node, layers: MergeSource[], lowerSources: Source[], opaque: boolean): DirState {
    const children = new Map<string, Node>();
    const survivors = dir.survivors;
    dir.survivors = undefined;
    const upperWhiteouts = new Set<string>();
    let tarWhiteouts: Set<string> | undefined;
    // For each name, whether the first lower layer that mentions it shows an entry (true) or a
    // whiteout (false): that decides whether deleting the name later needs a whiteout.
    const lowerFirst = new Map<string, boolean>();
    const hidden = new Set<string>();
    for (const src of layers) {
      const list = sys.readdirAt(src.layer.fd, src.path);
      if (typeof list === 'number') {
        if (-list === E.ENOENT || -list === E.ENOTDIR) continue;
        throw new FsError(-list, 'list ' + src.path);
      }
      const whiteouts: string[] = [];
      const tarForm: string[] = [];
      const { names, types, inos } = list;
      for (let i = 0; i < names.length; i++) {
        const name = names[i]!;
        let type = types[i]!;
        if (name.startsWith(WH_PREFIX)) {
          if (name !== OPAQUE_MARKER && name.length > WH_PREFIX.length) {
            whiteouts.push(name.slice(WH_PREFIX.length));
            if (src.layer.writable) tarForm.push(name.slice(WH_PREFIX.length));
          }
          continue;
        }
        const rel = joinRel(src.path, name);
        if (type === sys.DT_UNKNOWN || type === sys.DT_CHR || (type === sys.DT_REG && src.xattrWhiteouts)) {
          if (sys.lstatAt(src.layer.fd, rel, this.scratch) < 0) continue;
          if (isWhiteoutStat(this.scratch)) {
            whiteouts.push(name);
            continue;
          }
          const fmt = this.scratch[S.mode]! & S_IFMT;
          if (fmt === S_IFREG && src.xattrWhiteouts && statSize(this.scratch) === 0 && isXattrWhiteout(src.layer, rel)) {
            whiteouts.push(name);
            continue;
          }
          type = dtFromMode(fmt);
        }
        if (!src.layer.writable && !lowerFirst.has(name)) lowerFirst.set(name, true);
        if (children.has(name) || hidden.has(name)) continue;
        const writable = src.layer.writable;
        const child = new Node(name, dir, kindOf(type), writable, writable ? null : { layer: src.layer, path: rel }, false);
        // readdir and stat must agree on inode numbers (ls -i, find -inum): fix it now.
        child.ino = this.mapIno(inos[i]!, src.layer);
        children.set(name, child);
      }
      if (tarForm.length > 0) tarWhiteouts = new Set(tarForm);
      for (const name of whiteouts) {
        if (src.layer.writable) upperWhiteouts.add(name);
        else if (!lowerFirst.has(name)) lowerFirst.set(name, false);
        if (!children.has(name)) hidden.add(name);
      }
    }
    for (const [name, child] of children) {
      child.lowerVisible = lowerFirst.get(name) === true;
      const old = survivors?.get(name);
      if (old !== undefined && old.kind === child.kind) {
        // The kernel still knows the old node: it stays the one for this name (same node id and
        // inode number), with what the layers say now.
        old.inUpper = child.inUpper;
        old.lower = child.lower;
        old.lowerVisible = child.lowerVisible;
        children.set(name, old);
      }
    }
    return tarWhiteouts === undefined
      ? { lowerSources, opaque, children, upperWhiteouts }
      : { lowerSources, opaque, children, upperWhiteouts, tarWhiteouts };
  }

  /** Whether a lower layer still shows `name` in directory `dir` (so deleting it needs a whiteout). */
  lowerHas(dir: Node, name: string): boolean {
    for (const src of this.dirState(dir).lowerSources) {
      const rel = joinRel(src.path, name);
      if (sys.lstatAt(src.layer.fd, rel, this.scratch) === 0) return !isWhiteoutStat(this.scratch);
      if (hasTarWhiteout(src.layer, rel)) return false;
    }
    return false;
  }

  /** Names for readdir, "." and ".." included. */
  list(dir: Node): { names: string[]; nodes: Node[] } {
    const state = this.dirState(dir);
    const names = ['.', '..'];
    const nodes: Node[] = [dir, dir.parent ?? dir];
    for (const [name, node] of state.children) {
      names.push(name);
      nodes.push(node);
    }
    return { names, nodes };
  }

  isEmpty(dir: Node): boolean {
    return this.dirState(dir).children.size === 0;
  }

  statfs(out: Float64Array): void {
    const layer = this.upper ?? this.stack.lowers[0]!;
    const r = sys.statvfsFd(layer.fd, out);
    if (r < 0) throw new FsError(-r, 'statfs');
    // Leave room for the ".wh." prefix so every visible name can be whited out.
    out[10] = Math.max(1, out[10]! - WH_PREFIX.length);
  }

  checkName(name: string): void {
    if (isReservedName(name)) throw new FsError(E.EINVAL, `names starting with ${WH_PREFIX} are reserved`);
  }
}

export function kindOf(dtype: number): Kind {
  if (dtype === sys.DT_DIR) return 'dir';
  if (dtype === sys.DT_REG) return 'file';
  if (dtype === sys.DT_LNK) return 'symlink';
  return 'special';
}

function dtFromMode(fmt: number): number {
  switch (fmt) {
    case S_IFDIR:
      return sys.DT_DIR;
    case S_IFREG:
      return sys.DT_REG;
    case S_IFLNK:
      return sys.DT_LNK;
    default:
      return sys.DT_CHR;
  }
}

export function kindOfMode(mode: number): Kind {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return 'dir';
    case S_IFREG:
      return 'file';
    case S_IFLNK:
      return 'symlink';
    default:
      return 'special';
  }
}

