/**
 * The dentry cache: a tree of nodes mirroring the merged view. A directory node, once loaded,
 * holds every visible child, so a name it does not hold is a cached negative entry: lookups of
 * absent names cost nothing after the first. Loaded directories are kept in LRU order and
 * unloaded (children dropped) when the cache grows past its bound; a directory with open files
 * or work in flight below it is skipped.
 */
import { ROOT, joinRel, type Layer } from './layers.js';

export type Kind = 'dir' | 'file' | 'symlink' | 'special';

/** Where a directory exists in one lower layer. */
export interface Source {
  layer: Layer;
  path: string;
}

export interface DirState {
  /** Lower directories merged below this one, top-down (empty when opaque or upper-only). */
  lowerSources: Source[];
  opaque: boolean;
  /** Visible children; a missing name is a negative entry. */
  children: Map<string, Node>;
  /** Names the upper directory holds a whiteout for. */
  upperWhiteouts: Set<string>;
  /** Of those, the ones in OCI form (a `.wh.<name>` file, as fuse-overlayfs may write). */
  tarWhiteouts?: Set<string>;
}

export class Node {
  /** Inode number reported for the life of the mount; 0 until first stat. */
  ino = 0;
  /** Open file handles on this node; a node with handles is never evicted. */
  open = 0;
  unlinked = false;
  /**
   * Set while an unlinked file is still open: libfuse renamed it to a `.fuse_hidden*` name and
   * strata moved its upper entry to this name inside the work dir, where it lives until released.
   */
  hiddenName: string | null = null;
  /** Directory state; undefined until the directory is loaded (or for non-directories). */
  dir: DirState | undefined;

  constructor(
    public name: string,
    public parent: Node | null,
    public kind: Kind,
    /** An entry exists in the upper layer at this node's merged path. */
    public inUpper: boolean,
    /** For an entry not in the upper: the top-most lower entry (directories: the first source). */
    public lower: Source | null,
    /** Some lower layer shows this name, so removing it from the merged view needs a whiteout. */
    public lowerVisible: boolean,
  ) {}

  /** The merged path relative to the root, which is also the entry's path in the upper. */
  rel(): string {
    if (this.parent === null) return ROOT;
    const parts: string[] = [];
    for (let n: Node | null = this; n !== null && n.parent !== null; n = n.parent) parts.push(n.name);
    return parts.reverse().join('/');
  }

  childRel(name: string): string {
    return joinRel(this.rel(), name);
  }
}

export interface CacheStats {
  lookups: number;
  hits: number;
  misses: number;
  entries: number;
  loadedDirs: number;
  evictions: number;
}

export class DentryCache {
  readonly stats: CacheStats = { lookups: 0, hits: 0, misses: 0, entries: 0, loadedDirs: 0, evictions: 0 };
  private readonly lru = new Map<Node, true>();

  constructor(private readonly maxEntries: number) {}

  /** Record use of a loaded directory (moves it to the young end). */
  touch(dir: Node): void {
    this.lru.delete(dir);
    this.lru.set(dir, true);
  }

  /**
   * Mutations in flight. While one runs (a copy-up awaiting its data, say), nothing is evicted:
   * it holds nodes and directory states that must stay the ones the tree shows.
   */
  busy = 0;

  loaded(dir: Node, state: DirState): void {
    dir.dir = state;
    this.stats.entries += state.children.size;
    this.stats.loadedDirs++;
    this.lru.set(dir, true);
    if (this.stats.entries > this.maxEntries && this.busy === 0) this.evict(dir);
  }

  added(): void {
    this.stats.entries++;
  }

  removed(): void {
    this.stats.entries--;
  }

  /** Forget a detached subtree (after rmdir, rename over a directory, eviction). */
  forget(node: Node): void {
    if (node.dir === undefined) return;
    for (const child of node.dir.children.values()) this.forget(child);
    this.stats.entries -= node.dir.children.size;
    this.stats.loadedDirs--;
    this.lru.delete(node);
    node.dir = undefined;
  }

  /** Unload least recently used directories, never `keep` (just loaded) nor its ancestors. */
  private evict(keep: Node): void {
    const target = this.maxEntries * 0.9;
    const spared = new Set<Node>();
    for (let n: Node | null = keep; n !== null; n = n.parent) spared.add(n);
    for (const dir of this.lru.keys()) {
      if (this.stats.entries <= target) break;
      if (dir.parent === null || spared.has(dir) || !evictable(dir)) continue;
      this.forget(dir);
      this.stats.evictions++;
    }
  }
}

/** A directory can be unloaded when nothing below it is open (open handles pin their nodes). */
function evictable(dir: Node): boolean {
  if (dir.dir === undefined) return true;
  for (const child of dir.dir.children.values()) {
    if (child.open > 0) return false;
    if (child.dir !== undefined && !evictable(child)) return false;
  }
  return true;
}
