/**
 * The store's metadata in LevelDB: layers, images and tags, each logical change one atomic batch.
 * LevelDB lets one process open a database at a time; a second strata command on the same root
 * waits for the first (saying so once) instead of failing or corrupting anything.
 */
import { Level } from 'level';
import type { Digest } from './digest.js';
import { StoreError } from './errors.js';

/**
 * Every write is synced: a command's later steps (removing a directory, printing an id) rely on
 * the record being on disk first, and there are only a few writes per command.
 */
const SYNC = { sync: true } as const;

/** One change of a batch: a put (with value) or a del, in one of the sublevels. */
export interface Op {
  type: 'put' | 'del';
  sublevel: unknown;
  key: string;
  value?: unknown;
}

export interface LayerRecord {
  id: string;
  /** The layer below, or null for a base layer. */
  parent: string | null;
  /** A writable layer (a container's or a build step's upper); read-only layers never change. */
  rw: boolean;
  created: string;
  /** Set once content is applied to a read-only layer. */
  diffId?: Digest;
  chainId?: Digest;
  /** Bytes of file content and of the uncompressed tar. */
  size?: number;
  tarBytes?: number;
  /** Images whose layer list names this layer (updated in the batch that adds or drops one). */
  refs: number;
}

export interface ImageRecord {
  id: Digest;
  /** The config JSON, exactly the bytes its id is the digest of. */
  config: string;
  /** Layer ids, bottom first (ChainIDs' hex). */
  layers: string[];
  created: string;
}

export interface MountRecord {
  mountpoint: string;
  image: Digest | null;
  /** The writable layer made for this mount, if it is read-write. */
  rwLayer: string | null;
  /** How many get() calls hold it (put() releases); CLI mounts hold one. */
  refs: number;
  /** The layer a get() mounted, for mounts made through the driver contract. */
  layer: string | null;
}

/** What a container runs: the image's config with the run's flags applied (container/process.ts). */
export interface ContainerProcess {
  args: string[];
  env: string[];
  cwd: string;
  /** USER as given (name or number, with an optional group), resolved in the rootfs at start. */
  user: string;
  tty: boolean;
  openStdin: boolean;
  network: 'none' | 'host';
  binds: Array<{ source: string; destination: string; readonly: boolean }>;
}

/**
 * What a container was last seen doing. `running` names the process that supervises it (and its
 * start time, so a reused pid is not taken for it): if that process is gone, so is the container.
 */
export type ContainerState =
  | { status: 'created' }
  | { status: 'running'; pid: number; pidStart: number; startedAt: string }
  | { status: 'exited'; exitCode: number; startedAt: string; finishedAt: string; error?: string };

export interface ContainerRecord {
  id: string;
  name: string;
  created: string;
  /** The image's id, and the reference it was given by (for ps). */
  image: Digest;
  imageRef: string;
  /** The writable layer, over an init layer (runtime mount points) over the image's layers. */
  layer: string;
  initLayer: string;
  process: ContainerProcess;
  /** The Cmd and Entrypoint as the image config of a commit records them. */
  cmd: string[] | null;
  entrypoint: string[] | null;
  stopSignal: string;
  autoRemove: boolean;
  state: ContainerState;
}

/** A build step's result, by cache key: the image config after it and its layers (bottom first). */
export interface BuildCacheRecord {
  config: string;
  layers: string[];
}

/**
 * The build cache's description of COPY or ADD sources, valid while `summary` (a digest of the
 * entries' lstat, or null where the sources are layers, which never change) still holds.
 */
export interface SourceDescriptionRecord {
  summary: string | null;
  digest: string;
  dirs: number;
  count: number;
}

/** A registry blob that holds a layer's tar (compressed or not), and the repositories it is in. */
export interface DistributionRecord {
  diffId: string;
  digest: string;
  size: number;
  mediaType: string;
  /** `registry/repository` names the blob was pulled from or pushed to. */
  repositories: string[];
}

export class Metadata {
  readonly layers;
  readonly images;
  readonly tags;
  readonly mounts;
  readonly buildCache;
  readonly fileDigests;
  readonly sourceDescriptions;
  readonly containers;
  readonly distribution;

  private constructor(readonly db: Level<string, unknown>) {
    this.layers = db.sublevel<string, LayerRecord>('layers', { valueEncoding: 'json' });
    this.images = db.sublevel<string, ImageRecord>('images', { valueEncoding: 'json' });
    this.tags = db.sublevel<string, string>('tags', { valueEncoding: 'utf8' });
    this.mounts = db.sublevel<string, MountRecord>('mounts', { valueEncoding: 'json' });
    this.buildCache = db.sublevel<string, BuildCacheRecord>('buildcache', { valueEncoding: 'json' });
    // Build context files' content digests by host path (see builder/file-digests.ts).
    this.fileDigests = db.sublevel<string, { id: string; digest: string }>('filedigests', { valueEncoding: 'json' });
    // COPY and ADD sources' descriptions, by what they name (see builder/file-digests.ts).
    this.sourceDescriptions = db.sublevel<string, SourceDescriptionRecord>('sourcedescs', { valueEncoding: 'json' });
    this.containers = db.sublevel<string, ContainerRecord>('containers', { valueEncoding: 'json' });
    // Registry blobs known to hold a layer, by `<DiffID> <blob digest>` (see registry/blobs.ts).
    this.distribution = db.sublevel<string, DistributionRecord>('distribution', { valueEncoding: 'json' });
  }

  /**
   * Open the database at `path`, waiting while another process holds it. `onWait` is told once,
   * so the user knows why nothing happens.
   */
  static async open(path: string, onWait: () => void, timeoutMs = 10 * 60_000): Promise<Metadata> {
    const started = Date.now();
    let told = false;
    for (;;) {
      const db = new Level<string, unknown>(path, { valueEncoding: 'json' });
      try {
        await db.open();
        return new Metadata(db);
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause;
        if (cause?.code !== 'LEVEL_LOCKED') throw err;
        if (Date.now() - started > timeoutMs) throw new Error(`the store at ${path} stayed locked by another strata command`);
        if (!told) {
          onWait();
          told = true;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Set once a write failed and the database could not be reopened: no write is taken after. */
  private failed: Error | null = null;

  /** Whether the database stopped taking writes in this process (see reopen). */
  get unusable(): boolean {
    return this.failed !== null;
  }

  private spaceFailure = false;

  /**
   * Whether the last failed write failed for want of room. Then LevelDB could not append the
   * batch to its log, and what part of it got there is dropped when the log is read again: the
   * batch is known not to be recorded, even with the database closed. (A failed fsync, an EIO,
   * leaves that open.)
   */
  get lastFailureWasSpace(): boolean {
    return this.spaceFailure;
  }

  /** Apply `ops` atomically and durably (classic-level's sync option; its sublevel types omit it). */
  async write(ops: Op[]): Promise<void> {
    if (this.failed !== null) throw new StoreError(`cannot write the store's database: ${this.failed.message}`);
    try {
      await (this.db.batch as (ops: Op[], o: typeof SYNC) => Promise<void>).call(this.db, ops, SYNC);
    } catch (err) {
      // LevelDB could not write its log (a full disk): the batch is not recorded, and the caller
      // must hear it as the store's refusal, not as a bug. Anything else is one.
      if ((err as { code?: unknown }).code !== 'LEVEL_IO_ERROR') throw err;
      // LevelDB's message ends in strerror's text: there is no errno to read.
      this.spaceFailure = /No space left on device|Disk quota exceeded/.test((err as Error).message);
      await this.reopen(err as Error);
      throw new StoreError(`cannot write the store's database: ${(err as Error).message}`);
    }
  }

  /**
   * After a failed write, LevelDB keeps the batch's partial record in its log and goes on taking
   * writes that its next open drops along with it (seen on a full tmpfs: a delete reported done
   * came back). Reopening replays the log without the failed batch and starts a new log, so that
   * later writes (a command's clean-up) last. If it cannot reopen (no room for the new log), the
   * database stays closed and every later write is refused: nothing is reported done that is not.
   */
  private async reopen(cause: Error): Promise<void> {
    try {
      await this.db.close();
      await this.db.open();
      for (const sub of [this.layers, this.images, this.tags, this.mounts, this.buildCache, this.fileDigests, this.sourceDescriptions, this.containers, this.distribution]) {
        await sub.open();
      }
    } catch {
      this.failed = cause;
    }
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  async allLayers(): Promise<LayerRecord[]> {
    return this.layers.values().all();
  }

  async allImages(): Promise<ImageRecord[]> {
    return this.images.values().all();
  }

  async allMounts(): Promise<MountRecord[]> {
    return this.mounts.values().all();
  }

  async allContainers(): Promise<ContainerRecord[]> {
    return this.containers.values().all();
  }

  async allTags(): Promise<Array<[string, string]>> {
    return this.tags.iterator().all();
  }
}
