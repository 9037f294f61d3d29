/**
 * The dentry cache: a tree of nodes mirroring the merged view. A directory node, once loaded,
 * holds every visible child, so a name it does not hold is a cached negative entry: lookups of
 * absent names cost nothing after the first. Loaded directories are kept in LRU order and
 * unloaded (children dropped) when the cache grows past its bound. A child the kernel still
 * holds (a node id it has not forgotten, an open file) survives the unload and is the node
 * found again when the directory reloads: one name, one node, one node id.
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
  /** Open file handles on this node. */
  open = 0;
  /** The FUSE node id the kernel knows this node by; 0 while it knows none. */
  nodeid = 0;
  /** The kernel's references to `nodeid` (lookups not yet forgotten). */
  nlookup = 0;
  /** st_nlink at the last stat: files with other names are not kept in the kernel's caches. */
  links = 1;
  unlinked = false;
  /**
   * Set when an unlinked (still open) lower file is changed: its copy lives under this name in
   * the work dir, out of the merged view, until the last handle and reference are gone.
   */
  hiddenName: string | null = null;
  /** Directory state; undefined until the directory is loaded (or for non-directories). */
  dir: DirState | undefined;
  /** Children the kernel still held when this directory was unloaded, reused when it reloads. */
  survivors: Map<string, Node> | undefined;

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
    if (this.relAt === Node.moves) return this.relCache;
    const rel = this.parent === null ? ROOT : joinRel(this.parent.rel(), this.name);
    this.relCache = rel;
    this.relAt = Node.moves;
    return rel;
  }

  /** Give this node a new name and parent; every cached path is stale from now on. */
  move(parent: Node, name: string): void {
    this.parent = parent;
    this.name = name;
    Node.moves++;
  }

  /**
   * Paths are asked for on nearly every request and change only when something is renamed, so
   * each node keeps its path, valid while no rename has happened since (one counter for all).
   */
  private static moves = 0;
  private relCache = '';
  private relAt = -1;

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

  /** Forget a detached subtree (after rmdir, rename over a directory). */
  forget(node: Node): void {
    node.survivors = undefined;
    if (node.dir === undefined) return;
    for (const child of node.dir.children.values()) this.forget(child);
    this.dropState(node);
  }

  /** Unload a directory that stays in the tree; children still held by the kernel survive. */
  private unload(dir: Node): void {
    if (dir.dir === undefined) return;
    for (const [name, child] of dir.dir.children) {
      this.unload(child);
      if (child.nlookup > 0 || child.open > 0 || child.survivors !== undefined) (dir.survivors ??= new Map()).set(name, child);
    }
    this.dropState(dir);
  }

  private dropState(dir: Node): void {
    this.stats.entries -= dir.dir!.children.size;
    this.stats.loadedDirs--;
    this.lru.delete(dir);
    dir.dir = undefined;
  }

  /** Unload least recently used directories, never `keep` (just loaded) nor its ancestors. */
  private evict(keep: Node): void {
    const target = this.maxEntries * 0.9;
    const spared = new Set<Node>();
    for (let n: Node | null = keep; n !== null; n = n.parent) spared.add(n);
    for (const dir of this.lru.keys()) {
      if (this.stats.entries <= target) break;
      if (dir.parent === null || spared.has(dir)) continue;
      this.unload(dir);
      this.stats.evictions++;
    }
  }
}
